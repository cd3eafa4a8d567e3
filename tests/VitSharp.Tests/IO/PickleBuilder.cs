using System.Buffers.Binary;
using System.Text;

namespace VitSharp.Tests.IO;

/// <summary>Writes pickle opcodes by hand, so tests can build well-formed and hostile pickles without Python.</summary>
internal sealed class PickleBuilder
{
    private readonly MemoryStream _s = new();

    public byte[] Bytes => _s.ToArray();
    public long Position => _s.Position;

    public PickleBuilder Op(params byte[] codes) { _s.Write(codes); return this; }
    public PickleBuilder Op(char code) => Op((byte)code);
    public PickleBuilder Proto(int p = 2) => Op(0x80, (byte)p);
    public PickleBuilder Mark() => Op('(');
    public PickleBuilder Tuple() => Op('t');
    public PickleBuilder EmptyTuple() => Op(')');
    public PickleBuilder EmptyDict() => Op('}');
    public PickleBuilder Reduce() => Op('R');
    public PickleBuilder SetItem() => Op('s');
    public PickleBuilder SetItems() => Op('u');
    public PickleBuilder Stop() => Op('.');
    public PickleBuilder None() => Op('N');
    public PickleBuilder False() => Op(0x89);
    public PickleBuilder Global(string module, string name) { Op('c'); _s.Write(Encoding.ASCII.GetBytes(module + "\n" + name + "\n")); return this; }

    public PickleBuilder Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        Op('X');
        U32((uint)b.Length);
        _s.Write(b);
        return this;
    }

    public PickleBuilder U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _s.Write(b); return this; }

    public PickleBuilder Int(long v)
    {
        if (v is >= int.MinValue and <= int.MaxValue) { Op('J'); return U32((uint)(int)v); }
        Op(0x8a, 8);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, v);
        _s.Write(b);
        return this;
    }

    public PickleBuilder IntTuple(params long[] values) { Mark(); foreach (var v in values) Int(v); return Tuple(); }

    /// <summary>A torch tensor: <c>_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())</c>.</summary>
    public PickleBuilder Tensor(string storageKey, string storageType, long numel, long offset, long[] size, long[] stride)
    {
        Global("torch._utils", "_rebuild_tensor_v2");
        Mark();
        Mark().Str("storage").Global("torch", storageType).Str(storageKey).Str("cpu").Int(numel).Tuple().Op('Q');
        Int(offset).IntTuple(size).IntTuple(stride).False();
        Global("collections", "OrderedDict").EmptyTuple().Reduce();
        return Tuple().Reduce();
    }

    /// <summary>Starts <c>OrderedDict()</c> and a MARK for its items.</summary>
    public PickleBuilder BeginOrderedDict() => Proto().Global("collections", "OrderedDict").EmptyTuple().Reduce().Mark();
}
