using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace VitSharp.IO;

/// <summary>
/// A restricted unpickler for the pickles that <c>torch.save</c> writes: state_dicts, checkpoints of plain
/// containers, tensors and storages. It never constructs an arbitrary object and never runs anything.
/// </summary>
/// <remarks>
/// <para>Why a hand-written opcode loop and not a general unpickler such as Razorvine.Pickle: a general
/// unpickler exists to construct objects by name (a registry of constructors that can grow); we must never do
/// that. Here <c>GLOBAL</c>/<c>STACK_GLOBAL</c> resolve only the names of <see cref="AllowedGlobals"/>, and
/// <c>REDUCE</c>/<c>NEWOBJ</c>/<c>BUILD</c> apply only their C# stand-ins listed in this file; any other name
/// (<c>posix.system</c>, <c>builtins.eval</c>, <c>subprocess.Popen</c>, …) is refused the moment it is read,
/// before anything that follows it is looked at. One small explicit state machine with an allow-list is easy to
/// audit line by line.</para>
/// <para>Memory is bounded by the input: a declared string or bytes length is checked against the bytes that
/// remain before anything is allocated, the memo and the stack have fixed limits, and every other opcode creates
/// at most one small object. Errors are <see cref="TorchFileException"/>s naming the opcode's offset in the pickle.</para>
/// <para>Values produced: <see cref="PickleDict"/> (dict and OrderedDict, insertion order kept),
/// <see cref="List{T}"/> of object (lists and sets), <c>object?[]</c> (tuples), <see cref="long"/> (or
/// <see cref="BigInteger"/> beyond 64 bits), <see cref="double"/>, <see cref="string"/>, <see cref="bool"/>,
/// <c>byte[]</c>, <c>null</c>, <see cref="TorchStorageRef"/> (a persistent id), <see cref="TorchTensorRef"/> and
/// <see cref="PickleGlobal"/> (an allow-listed name that was not called).</para>
/// </remarks>
public sealed class TorchPickle
{
    /// <summary>Most memo entries a pickle may create.</summary>
    public const int MaxMemo = 1 << 22;

    /// <summary>Most values the stack (all marks included) may hold at once.</summary>
    public const int MaxStack = 1 << 20;

    /// <summary>Most nested MARKs.</summary>
    public const int MaxMarks = 1 << 12;

    /// <summary>Longest text line (protocol 0 opcodes such as GLOBAL, INT, PUT).</summary>
    private const int MaxLine = 4096;

    /// <summary>Storage type names (module <c>torch</c>) and their element types.</summary>
    public static readonly IReadOnlyDictionary<string, DType> StorageTypes = new Dictionary<string, DType>
    {
        ["FloatStorage"] = DType.F32, ["HalfStorage"] = DType.F16, ["BFloat16Storage"] = DType.BF16,
        ["DoubleStorage"] = DType.F64, ["LongStorage"] = DType.I64, ["IntStorage"] = DType.I32,
        ["ShortStorage"] = DType.I16, ["CharStorage"] = DType.I8, ["ByteStorage"] = DType.U8, ["BoolStorage"] = DType.BOOL,
    };

    /// <summary>Every global a pickle may name ("module.name"). Everything else is refused.</summary>
    public static readonly IReadOnlySet<string> AllowedGlobals = new HashSet<string>(
        new[]
        {
            "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
            "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "_codecs.encode", "torch.Size",
            "torch._tensor._rebuild_from_type_v2", "torch.Tensor", "torch.nn.parameter.Parameter",
            // Inert data that training checkpoints hold beside the weights (DeiT's and timm's 'args', timm's 'metric'):
            // an attribute bag and numpy scalars, built here as plain values; nothing of them is called.
            "argparse.Namespace", "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        }.Concat(StorageTypes.Keys.Select(s => "torch." + s)));

    private readonly string _source;
    private readonly Dictionary<string, TorchStorageRef> _storages = new();

    /// <summary>Creates an unpickler; <paramref name="source"/> (a file path) starts every error message.</summary>
    public TorchPickle(string source) => _source = source;

    /// <summary>The storages the persistent ids of the pickles loaded so far named, by key.</summary>
    public IReadOnlyDictionary<string, TorchStorageRef> Storages => _storages;

    /// <summary>Unpickles one pickle from <paramref name="input"/>, which is left just after its STOP.</summary>
    public static object? Load(Stream input, string source) => new TorchPickle(source).LoadOne(input);

    /// <summary>Unpickles one pickle from <paramref name="input"/> (left just after its STOP); storages it names
    /// are added to <see cref="Storages"/>.</summary>
    /// <exception cref="TorchFileException">Malformed input, a refused global or opcode, or a limit exceeded.</exception>
    public object? LoadOne(Stream input)
    {
        try { return new Machine(this, input).Run(); }
        catch (IOException e) when (e is not EndOfStreamException) { throw Fail($"read error in the pickle: {e.Message}"); }
    }

    internal TorchFileException Fail(string problem, long? offset = null, string? key = null) =>
        new(_source, problem, key, offset);

    /// <summary>The opcode loop over one pickle.</summary>
    private sealed class Machine(TorchPickle owner, Stream input)
    {
        private readonly long _start = input.Position;
        private readonly List<object?> _stack = new();
        private readonly List<int> _marks = new();
        private readonly Dictionary<long, object?> _memo = new();
        private long _op;   // offset of the current opcode, relative to the pickle's start

        private TorchFileException Fail(string problem, string? key = null) =>
            owner.Fail($"{problem} at pickle offset {_op}", _op, key);

        public object? Run()
        {
            try { return Loop(); }
            catch (EndOfStreamException) { throw Fail("the pickle ends inside this opcode, before its STOP (truncated?)"); }
        }

        private object? Loop()
        {
            while (true)
            {
                _op = input.Position - _start;
                int code = input.ReadByte();
                if (code < 0) throw Fail("the pickle ends before its STOP opcode (truncated?)");
                switch (code)
                {
                    case 0x80: // PROTO
                        int proto = ReadU8();
                        if (proto > 5) throw Fail($"unsupported pickle protocol {proto}");
                        break;
                    case 0x95: ReadI64(); break; // FRAME: a hint only
                    case '.': // STOP
                        if (_marks.Count != 0 || _stack.Count != 1) throw Fail($"STOP with {_stack.Count} values and {_marks.Count} marks on the stack (expected exactly one value)");
                        return _stack[0];
                    case '(': // MARK
                        if (_marks.Count >= MaxMarks) throw Fail($"more than {MaxMarks} nested marks");
                        _marks.Add(_stack.Count);
                        break;
                    case '0': Pop(); break; // POP
                    case '1': PopMark(); break; // POP_MARK
                    case '2': Push(Peek()); break; // DUP

                    case 'N': Push(null); break;
                    case 0x88: Push(true); break;
                    case 0x89: Push(false); break;
                    case 'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4))); break;
                    case 'K': Push((long)ReadU8()); break;
                    case 'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(2))); break;
                    case 0x8a: Push(ReadLong(ReadU8())); break; // LONG1
                    case 0x8b: // LONG4
                        int n4 = BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4));
                        if (n4 < 0 || n4 > 1024) throw Fail($"LONG4 of {n4} bytes (at most 1024 accepted)");
                        Push(ReadLong(n4));
                        break;
                    case 'I': Push(ParseInt(ReadLine())); break;
                    case 'L': Push(ParseInt(ReadLine().TrimEnd('L'))); break;
                    case 'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8))); break;
                    case 'F':
                        string f = ReadLine();
                        Push(double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : throw Fail("malformed FLOAT"));
                        break;

                    case 'X': Push(Utf8(ReadBytes(ReadLength(4)))); break; // BINUNICODE
                    case 0x8c: Push(Utf8(ReadBytes(ReadU8()))); break; // SHORT_BINUNICODE
                    case 0x8d: Push(Utf8(ReadBytes(ReadLength(8)))); break; // BINUNICODE8
                    case 'T': Push(Utf8(ReadBytes(ReadLength(4)))); break; // BINSTRING (Python 2 str, read as torch.load does: utf-8)
                    case 'U': Push(Utf8(ReadBytes(ReadU8()))); break; // SHORT_BINSTRING
                    case 'V': Push(RawUnicodeEscape(ReadLine(int.MaxValue))); break; // UNICODE
                    case 'B': Push(ReadBytes(ReadLength(4))); break; // BINBYTES
                    case 'C': Push(ReadBytes(ReadU8())); break; // SHORT_BINBYTES
                    case 0x8e: Push(ReadBytes(ReadLength(8))); break; // BINBYTES8
                    case 0x96: Push(ReadBytes(ReadLength(8))); break; // BYTEARRAY8

                    case '}': Push(new PickleDict()); break;
                    case ']': Push(new List<object?>()); break;
                    case ')': Push(Array.Empty<object?>()); break;
                    case 0x8f: Push(new List<object?>()); break; // EMPTY_SET
                    case 'd': // DICT
                        var dict = new PickleDict();
                        SetItems(dict, PopMark());
                        Push(dict);
                        break;
                    case 'l': Push(new List<object?>(PopMark())); break; // LIST
                    case 't': Push(PopMark().ToArray()); break; // TUPLE
                    case 0x91: Push(new List<object?>(PopMark())); break; // FROZENSET
                    case 0x85: Push(new[] { Pop() }); break; // TUPLE1
                    case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; } // TUPLE2
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; } // TUPLE3
                    case 'a': { var v = Pop(); ListAt("APPEND").Add(v); break; }
                    case 'e': case 0x90: { var items = PopMark(); ListAt(code == 'e' ? "APPENDS" : "ADDITEMS").AddRange(items); break; }
                    case 's': { var v = Pop(); var k = Pop(); Add(DictAt("SETITEM"), k, v); break; }
                    case 'u': { var items = PopMark(); SetItems(DictAt("SETITEMS"), items); break; }

                    case 'q': Memo(ReadU8()); break; // BINPUT
                    case 'r': Memo(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4))); break; // LONG_BINPUT
                    case 'p': Memo(ParseIndex(ReadLine())); break; // PUT
                    case 0x94: Memo(_memo.Count); break; // MEMOIZE
                    case 'h': Push(Recall(ReadU8())); break; // BINGET
                    case 'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))); break; // LONG_BINGET
                    case 'g': Push(Recall(ParseIndex(ReadLine()))); break; // GET

                    case 'c': // GLOBAL
                    {
                        string module = ReadLine(), name = ReadLine();
                        Push(Resolve(module, name));
                        break;
                    }
                    case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop(); var module = Pop();
                        if (module is not string m || name is not string n) throw Fail("STACK_GLOBAL needs two strings");
                        Push(Resolve(m, n));
                        break;
                    }
                    case 'R': { var args = Pop(); var fn = Pop(); Push(Call(fn, AsTuple(args, "REDUCE"), "REDUCE")); break; }
                    case 0x81: { var args = Pop(); var cls = Pop(); Push(New(cls, AsTuple(args, "NEWOBJ"))); break; } // NEWOBJ
                    case 0x92: // NEWOBJ_EX
                    {
                        var kwargs = Pop(); var args = Pop(); var cls = Pop();
                        if (kwargs is not PickleDict { Count: 0 }) throw Fail("NEWOBJ_EX with keyword arguments is not allowed");
                        Push(New(cls, AsTuple(args, "NEWOBJ_EX")));
                        break;
                    }
                    case 'b': // BUILD
                    {
                        var state = Pop();
                        if (Peek() is PickleDict target && state is PickleDict attributes) target.State = attributes;
                        else if (Peek() is NumpyDType dt && state is object?[] { Length: >= 2 } dstate && dstate[1] is string order) dt.ByteOrder = order;
                        else throw Fail($"BUILD of {Describe(Peek())} with {Describe(state)} is not allowed (only an OrderedDict's attributes)");
                        break;
                    }
                    case 'Q': Push(PersistentLoad(Pop())); break; // BINPERSID
                    case 'P': Push(PersistentLoad(ReadLine())); break; // PERSID

                    case 'i': case 'o': throw Fail($"opcode {(code == 'i' ? "INST" : "OBJ")} is not allowed (it builds arbitrary objects)");
                    case 0x82: case 0x83: case 0x84: throw Fail("extension-registry opcodes (EXT1/2/4) are not allowed");
                    case 0x97: case 0x98: throw Fail("out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER) are not supported");
                    case 'S': throw Fail("protocol-0 STRING is not supported");
                    default: throw Fail($"unknown opcode 0x{code:x2}");
                }
            }
        }

        // ---- stack and memo ----
        private void Push(object? v)
        {
            if (_stack.Count >= MaxStack) throw Fail($"stack deeper than {MaxStack} values");
            _stack.Add(v);
        }

        private object? Pop()
        {
            int floor = _marks.Count > 0 ? _marks[^1] : 0;
            if (_stack.Count <= floor) throw Fail("stack underflow");
            var v = _stack[^1];
            _stack.RemoveAt(_stack.Count - 1);
            return v;
        }

        private object? Peek()
        {
            int floor = _marks.Count > 0 ? _marks[^1] : 0;
            return _stack.Count > floor ? _stack[^1] : throw Fail("stack underflow");
        }

        private List<object?> PopMark()
        {
            if (_marks.Count == 0) throw Fail("no MARK to pop to");
            int at = _marks[^1];
            _marks.RemoveAt(_marks.Count - 1);
            var items = _stack.GetRange(at, _stack.Count - at);
            _stack.RemoveRange(at, _stack.Count - at);
            return items;
        }

        private void Memo(long index)
        {
            if (!_memo.ContainsKey(index) && _memo.Count >= MaxMemo) throw Fail($"more than {MaxMemo} memo entries");
            _memo[index] = Peek();
        }

        private object? Recall(long index) => _memo.TryGetValue(index, out var v) ? v : throw Fail($"memo entry {index} was never stored");

        private List<object?> ListAt(string op) => Peek() as List<object?> ?? throw Fail($"{op} on {Describe(Peek())}, not a list");

        private PickleDict DictAt(string op) => Peek() as PickleDict ?? throw Fail($"{op} on {Describe(Peek())}, not a dict");

        private void SetItems(PickleDict dict, List<object?> items)
        {
            if (items.Count % 2 != 0) throw Fail("SETITEMS with an odd number of values");
            for (int i = 0; i < items.Count; i += 2) Add(dict, items[i], items[i + 1]);
        }

        private void Add(PickleDict dict, object? key, object? value)
        {
            if (dict.TryAdd(key, value, out bool unhashable)) return;
            throw unhashable ? Fail($"dict key {Describe(key)} cannot be a key")
                : Fail($"duplicate key {Describe(key)} in a dict", key as string);
        }

        // ---- reading ----
        private int ReadU8() => input.ReadByte() is var b and >= 0 ? b : throw new EndOfStreamException();

        private long ReadI64() => BinaryPrimitives.ReadInt64LittleEndian(ReadBytes(8));

        /// <summary>A declared length, refused when more than the bytes that remain (so nothing huge is allocated).</summary>
        private int ReadLength(int width)
        {
            long n = width == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)) : ReadI64();
            long remaining = input.Length - input.Position;
            if (n < 0 || n > remaining) throw Fail($"declared length {n} exceeds the {remaining} bytes that remain");
            if (n > Array.MaxLength) throw Fail($"declared length {n} is too large");
            return (int)n;
        }

        private byte[] ReadBytes(int n)
        {
            if (n == 0) return [];
            if (n > input.Length - input.Position) throw new EndOfStreamException();
            var b = new byte[n];
            input.ReadExactly(b);
            return b;
        }

        private string ReadLine(int limit = MaxLine)
        {
            var sb = new StringBuilder();
            while (true)
            {
                int b = ReadU8();
                if (b == '\n') return sb.ToString();
                if (sb.Length >= limit) throw Fail($"text argument longer than {limit} bytes");
                sb.Append((char)b);   // latin-1; protocol-0 arguments are ASCII
            }
        }

        private object ReadLong(int n)
        {
            var bytes = ReadBytes(n);
            if (n <= 8)
            {
                long v = 0;
                for (int i = n - 1; i >= 0; i--) v = (v << 8) | bytes[i];
                if (n > 0 && n < 8 && (bytes[n - 1] & 0x80) != 0) v -= 1L << (8 * n);   // two's complement sign
                return v;
            }
            var big = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
            return big >= long.MinValue && big <= long.MaxValue ? (object)(long)big : big;
        }

        private object ParseInt(string s)
        {
            if (s == "00") return false;   // protocol 0 booleans
            if (s == "01") return true;
            return long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? (object)v
                : BigInteger.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var big) ? big
                : throw Fail("malformed INT/LONG");
        }

        private long ParseIndex(string s) =>
            long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : throw Fail("malformed memo index");

        private string Utf8(byte[] b)
        {
            try { return new UTF8Encoding(false, true).GetString(b); }
            catch (DecoderFallbackException) { throw Fail("invalid UTF-8 in a string"); }
        }

        private string RawUnicodeEscape(string s)
        {
            var sb = new StringBuilder(s.Length);
            for (int i = 0; i < s.Length; i++)
            {
                int digits = s[i] == '\\' && i + 1 < s.Length ? s[i + 1] switch { 'u' => 4, 'U' => 8, _ => 0 } : 0;
                if (digits > 0 && i + 2 + digits <= s.Length
                    && int.TryParse(s.AsSpan(i + 2, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp)
                    && cp is >= 0 and <= 0x10FFFF)
                {
                    sb.Append(char.ConvertFromUtf32(cp is >= 0xD800 and <= 0xDFFF ? 0xFFFD : cp));
                    i += 1 + digits;
                }
                else sb.Append(s[i]);
            }
            return sb.ToString();
        }

        // ---- globals and calls: the allow-list ----
        private PickleGlobal Resolve(string module, string name)
        {
            string full = module + "." + name;
            if (!AllowedGlobals.Contains(full))
                throw owner.Fail($"refuses global '{Printable(full)}' at pickle offset {_op}: only tensors, storages and plain containers are allowed", _op);
            return new PickleGlobal(module, name);
        }

        private object?[] AsTuple(object? args, string op) => args as object?[] ?? throw Fail($"{op} arguments are {Describe(args)}, not a tuple");

        private object? New(object? cls, object?[] args)
        {
            if (cls is PickleGlobal { FullName: "collections.OrderedDict" } && args.Length == 0) return new PickleDict { IsOrdered = true };
            if (cls is PickleGlobal { FullName: "argparse.Namespace" } && args.Length == 0) return new PickleDict();   // attributes arrive by BUILD
            throw Fail($"NEWOBJ of {Describe(cls)} is not allowed");
        }

        private object? Call(object? fn, object?[] a, string op)
        {
            if (fn is not PickleGlobal g) throw Fail($"{op} calls {Describe(fn)}, which is not callable");
            switch (g.FullName)
            {
                case "collections.OrderedDict":
                    var od = new PickleDict { IsOrdered = true };
                    if (a.Length == 1 && a[0] is List<object?> pairs)
                        foreach (var p in pairs)
                            if (p is object?[] { Length: 2 } kv) Add(od, kv[0], kv[1]);
                            else throw Fail("OrderedDict(...) needs (key, value) pairs");
                    else if (a.Length != 0) throw Fail("OrderedDict(...) with unexpected arguments");
                    return od;
                case "torch._utils._rebuild_tensor_v2" when a.Length is 6 or 7:
                case "torch._utils._rebuild_tensor" when a.Length == 4:
                    bool requiresGrad = a.Length > 4 && a[4] is true;
                    return Tensor(a[0], a[1], a[2], a[3], requiresGrad);
                case "torch._utils._rebuild_parameter" when a.Length == 3:
                case "torch._utils._rebuild_parameter_with_state" when a.Length == 4:
                    return a[0] is TorchTensorRef t ? t with { RequiresGrad = a[1] is true } : throw Fail($"{g.Name} of {Describe(a[0])}, not a tensor");
                case "torch._tensor._rebuild_from_type_v2" when a.Length == 4 && a[1] is PickleGlobal { FullName: "torch.Tensor" or "torch.nn.parameter.Parameter" }:
                    // (func, new_type, args, state): torch's wrapper for a tensor with Python attributes; the attributes are dropped.
                    if (a[0] is not PickleGlobal { Module: "torch._utils" } inner) throw Fail($"_rebuild_from_type_v2 of {Describe(a[0])}");
                    return Call(inner, AsTuple(a[2], op), op) is TorchTensorRef rebuilt ? rebuilt : throw Fail("_rebuild_from_type_v2 did not rebuild a tensor");
                case "_codecs.encode" when a.Length == 2 && a[0] is string s && a[1] is "latin1" or "latin-1":
                    var bytes = new byte[s.Length];
                    for (int i = 0; i < s.Length; i++) bytes[i] = s[i] <= 0xFF ? (byte)s[i] : throw Fail("_codecs.encode: character outside latin-1");
                    return bytes;
                case "torch.Size" when a.Length == 1 && a[0] is object?[] dims:
                    return dims;
                case "numpy.dtype" when a.Length == 3 && a[0] is string code:
                    return new NumpyDType(code);
                case "numpy.core.multiarray.scalar" or "numpy._core.multiarray.scalar" when a.Length == 2 && a[0] is NumpyDType dtype && a[1] is byte[] raw:
                    return dtype.Scalar(raw) ?? throw Fail($"a numpy scalar of dtype '{Printable(dtype.Code)}' ({raw.Length} bytes) is not supported");
                default:
                    throw Fail($"{op} of '{g.FullName}' with {a.Length} argument(s) of this kind is not allowed");
            }
        }

        private TorchTensorRef Tensor(object? storage, object? offset, object? size, object? stride, bool requiresGrad)
        {
            if (storage is not TorchStorageRef st) throw Fail($"a tensor's storage is {Describe(storage)}, not a persistent storage");
            if (offset is not long off) throw Fail("a tensor's storage offset is not an integer");
            long[] sizes = Longs(size, "size"), strides = Longs(stride, "stride");
            if (sizes.Length != strides.Length) throw Fail($"a tensor has {sizes.Length} sizes but {strides.Length} strides");
            var t = new TorchTensorRef(st, off, sizes, strides, requiresGrad);
            string? problem = t.CheckBounds();
            return problem is null ? t : throw Fail(problem);
        }

        private long[] Longs(object? v, string what)
        {
            if (v is not object?[] items) throw Fail($"a tensor's {what} is {Describe(v)}, not a tuple");
            var r = new long[items.Length];
            for (int i = 0; i < r.Length; i++) r[i] = items[i] is long x ? x : throw Fail($"a tensor's {what} holds {Describe(items[i])}, not an integer");
            return r;
        }

        /// <summary>torch's persistent ids: <c>('storage', storage_type, key, location, numel[, view_metadata])</c>.</summary>
        private TorchStorageRef PersistentLoad(object? pid)
        {
            if (pid is not object?[] { Length: 5 or 6 } t || t[0] is not "storage")
                throw Fail($"persistent id {Describe(pid)} is not a torch storage ('storage', type, key, location, numel)");
            if (t[1] is not PickleGlobal { Module: "torch" } type || !StorageTypes.TryGetValue(type.Name, out var dtype))
                throw Fail($"unknown storage type {Describe(t[1])}");
            if (t[2] is not string key || t[3] is not string location || t[4] is not long numel || numel < 0)
                throw Fail("malformed storage persistent id (key, location and element count expected)");
            if (t.Length == 6 && t[5] is not null) throw Fail("legacy storage views (view_metadata) are not supported", key);
            var storage = new TorchStorageRef(key, dtype, numel, location);
            if (owner._storages.TryGetValue(key, out var seen))
            {
                if (seen.DType != dtype || seen.ElementCount != numel)
                    throw Fail($"storage '{Printable(key)}' is named as {seen.DType}[{seen.ElementCount}] and as {dtype}[{numel}]", key);
                return seen;
            }
            owner._storages[key] = storage;
            return storage;
        }

        internal static string Describe(object? v) => v switch
        {
            null => "None",
            string s => "'" + Printable(s.Length > 80 ? s[..80] + "…" : s) + "'",
            long or double or bool or BigInteger => Convert.ToString(v, CultureInfo.InvariantCulture)!,
            object?[] t => $"a tuple of {t.Length}",
            List<object?> => "a list",
            PickleDict => "a dict",
            byte[] => "bytes",
            PickleGlobal g => $"'{g.FullName}'",
            TorchTensorRef => "a tensor",
            TorchStorageRef => "a storage",
            _ => v.GetType().Name,
        };
    }

    /// <summary>Escapes control characters so a message stays on one line.</summary>
    internal static string Printable(string s)
    {
        if (!s.Any(char.IsControl)) return s;
        var sb = new StringBuilder(s.Length + 8);
        foreach (char c in s) sb.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString());
        return sb.ToString();
    }

    internal static string Describe(object? v) => Machine.Describe(v);
}

/// <summary>An allow-listed global that a pickle named (see <see cref="TorchPickle.AllowedGlobals"/>).</summary>
/// <param name="Module">Python module, e.g. <c>torch</c>.</param>
/// <param name="Name">Name inside the module, e.g. <c>FloatStorage</c>.</param>
public sealed record PickleGlobal(string Module, string Name)
{
    /// <summary>"module.name".</summary>
    public string FullName => Module + "." + Name;
}

/// <summary>A storage named by a persistent id: its key in the file, element type and element count.</summary>
/// <param name="Key">The storage's key (zip: the entry <c>data/KEY</c>; legacy: its place in the storage list).</param>
/// <param name="DType">Element type (from the storage type, e.g. <c>torch.HalfStorage</c> → F16).</param>
/// <param name="ElementCount">Elements the persistent id declares (checked against the file's bytes on open).</param>
/// <param name="Location">Device the storage was saved from ("cpu", "cuda:0"); data is always read to the CPU.</param>
public sealed record TorchStorageRef(string Key, DType DType, long ElementCount, string Location)
{
    /// <summary>Bytes the storage needs: <see cref="ElementCount"/> × item size.</summary>
    public long ByteLength => ElementCount * DType.ItemSize();
}

/// <summary>A tensor as the pickle describes it: a view (offset, sizes, strides, in elements) of a storage. Its
/// data is read on demand through <see cref="TorchArchive.ReadFloat32(TorchTensorRef)"/>.</summary>
/// <param name="Storage">The storage viewed.</param>
/// <param name="StorageOffset">First element's index in the storage.</param>
/// <param name="Size">Dimensions (empty for a 0-dim tensor).</param>
/// <param name="Stride">Elements between neighbours along each dimension.</param>
/// <param name="RequiresGrad">The saved <c>requires_grad</c> flag.</param>
public sealed record TorchTensorRef(TorchStorageRef Storage, long StorageOffset, long[] Size, long[] Stride, bool RequiresGrad = false)
{
    /// <summary>The storage's key.</summary>
    public string StorageKey => Storage.Key;

    /// <summary>Element type.</summary>
    public DType DType => Storage.DType;

    /// <summary>Product of <see cref="Size"/> (1 for 0-dim).</summary>
    public long ElementCount => Size.Aggregate(1L, (a, b) => checked(a * b));

    /// <summary>Whether the elements are one run of the storage in row-major order.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int d = Size.Length - 1; d >= 0; d--)
            {
                if (Size[d] != 1 && Stride[d] != expected) return false;
                expected *= Size[d];
            }
            return true;
        }
    }

    /// <summary>Shape as "[a, b]".</summary>
    public string ShapeString => "[" + string.Join(", ", Size) + "]";

    /// <summary>Null if every element the view reaches lies inside the storage's declared elements, else the problem.</summary>
    internal string? CheckBounds()
    {
        if (StorageOffset < 0) return $"negative storage offset {StorageOffset}";
        long last = StorageOffset;   // index of the furthest element reached
        bool empty = false;
        for (int d = 0; d < Size.Length; d++)
        {
            if (Size[d] < 0) return $"negative size in {ShapeString}";
            if (Stride[d] < 0) return $"negative stride {Stride[d]} (strides [{string.Join(", ", Stride)}])";
            if (Size[d] == 0) empty = true;
        }
        if (empty) return StorageOffset <= Storage.ElementCount ? null : $"storage offset {StorageOffset} beyond the storage's {Storage.ElementCount} elements";
        try
        {
            long count = 1;
            for (int d = 0; d < Size.Length; d++)
            {
                last = checked(last + (Size[d] - 1) * Stride[d]);
                count = checked(count * Size[d]);
            }
        }
        catch (OverflowException) { return $"size {ShapeString} with strides [{string.Join(", ", Stride)}] overflows"; }
        return last < Storage.ElementCount ? null
            : $"tensor {ShapeString} (offset {StorageOffset}, strides [{string.Join(", ", Stride)}]) reaches element {last} of a storage of {Storage.ElementCount} elements";
    }
}

/// <summary>A dict or OrderedDict from a pickle: insertion order kept, duplicate keys refused.</summary>
public sealed class PickleDict : IEnumerable<KeyValuePair<object, object?>>
{
    private readonly List<KeyValuePair<object, object?>> _items = new();
    private readonly Dictionary<object, int> _index = new(KeyComparer.Instance);

    /// <summary>True for <c>collections.OrderedDict</c>, false for a plain dict.</summary>
    public bool IsOrdered { get; init; }

    /// <summary>Attributes set by BUILD (a state_dict's <c>_metadata</c> lives here), or null.</summary>
    public PickleDict? State { get; internal set; }

    /// <summary>Number of entries.</summary>
    public int Count => _items.Count;

    /// <summary>Keys in insertion order.</summary>
    public IEnumerable<object> Keys => _items.Select(kv => kv.Key);

    /// <summary>The value of <paramref name="key"/>, or an exception if absent.</summary>
    public object? this[object key] => TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"key {TorchPickle.Describe(key)} not found");

    /// <summary>Looks a key up (strings, integers, tuples of them).</summary>
    public bool TryGetValue(object key, out object? value)
    {
        if (_index.TryGetValue(key, out int i)) { value = _items[i].Value; return true; }
        value = null;
        return false;
    }

    /// <summary>Whether <paramref name="key"/> is present.</summary>
    public bool ContainsKey(object key) => _index.ContainsKey(key);

    /// <summary>Adds an entry; false (and nothing added) if the key is present already or cannot be a key.</summary>
    internal bool TryAdd(object? key, object? value, out bool unhashable)
    {
        unhashable = !IsHashable(key);
        if (unhashable || _index.ContainsKey(key!)) return false;
        _index.Add(key!, _items.Count);
        _items.Add(new(key!, value));
        return true;
    }

    private static bool IsHashable(object? key) => key switch
    {
        string or long or double or bool or BigInteger or byte[] => true,
        object?[] t => t.All(IsHashable),
        _ => false,
    };

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<object, object?>> GetEnumerator() => _items.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Equality for dict keys: values, and tuples and bytes element by element.</summary>
    private sealed class KeyComparer : IEqualityComparer<object>
    {
        public static readonly KeyComparer Instance = new();

        public new bool Equals(object? a, object? b) => (a, b) switch
        {
            (object?[] x, object?[] y) => x.Length == y.Length && x.Zip(y).All(p => Equals(p.First, p.Second)),
            (byte[] x, byte[] y) => x.AsSpan().SequenceEqual(y),
            _ => object.Equals(a, b),
        };

        public int GetHashCode(object o) => o switch
        {
            object?[] t => t.Aggregate(17, (h, x) => h * 31 + (x is null ? 0 : GetHashCode(x))),
            byte[] b => b.Aggregate(17, (h, x) => h * 31 + x),
            _ => o.GetHashCode(),
        };
    }
}

/// <summary>A numpy dtype a pickle named (<c>numpy.dtype('f8', False, True)</c>), only to decode numpy scalars.</summary>
internal sealed class NumpyDType(string code)
{
    /// <summary>The type code: f8, f4, f2, i8, i4, i2, i1, u8, u4, u2, u1, b1.</summary>
    public string Code { get; } = code;
    /// <summary>'&lt;', '&gt;', '|' or '=' (set by BUILD).</summary>
    public string ByteOrder { get; set; } = "<";

    /// <summary>The scalar's value (double, long or bool), or null for an unsupported code or a wrong length.</summary>
    public object? Scalar(byte[] raw)
    {
        bool big = ByteOrder == ">";
        Span<byte> b = raw.ToArray();
        if (big != !BitConverter.IsLittleEndian) b.Reverse();
        return (Code, raw.Length) switch
        {
            ("f8", 8) => BitConverter.ToDouble(b),
            ("f4", 4) => (double)BitConverter.ToSingle(b),
            ("f2", 2) => (double)BitConverter.ToHalf(b),
            ("i8", 8) => BitConverter.ToInt64(b),
            ("i4", 4) => (long)BitConverter.ToInt32(b),
            ("i2", 2) => (long)BitConverter.ToInt16(b),
            ("i1", 1) => (long)(sbyte)b[0],
            ("u4", 4) => (long)BitConverter.ToUInt32(b),
            ("u2", 2) => (long)BitConverter.ToUInt16(b),
            ("u1", 1) => (long)b[0],
            ("b1", 1) => b[0] != 0,
            _ => null,
        };
    }
}
