namespace VitSharp.NN;

/// <summary>
/// Base class of layers and models: owns named parameters, buffers and child modules (in registration
/// order) and gives them PyTorch's dotted state_dict names (<c>transformer.layers.0.0.norm.weight</c>).
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Tensor Value)> _parameters = new();
    private readonly List<(string Name, Tensor Value)> _buffers = new();
    private readonly List<(string Name, Module Value)> _children = new();

    // Bumped whenever any module registers or replaces a parameter or child, so that a cached flat parameter list
    // (which spans descendants, who do not know their parents) is rebuilt after any change of structure.
    private static int s_structureVersion;
    private ParameterList? _parameterCache;   // one reference, read and written whole: list and version stay paired

    private sealed record ParameterList(Tensor[] Parameters, int Version);

    /// <summary>Whether the module is in training mode (dropout active). New modules start in training mode, as in PyTorch.</summary>
    public bool Training { get; private set; } = true;

    // Forward hooks: an array replaced whole on every change (copy on write), so that running them allocates nothing
    // and a hook may remove itself (or register another) while the hooks run. Null when there is none.
    private HookEntry[]? _forwardHooks;
    private static readonly object s_hookLock = new();
    private static int s_hookCount;   // hooks registered on all modules together: a zero skips the walk of HasForwardHooksInTree

    private sealed class HookEntry(Action<Module, ForwardInputs, Tensor> hook)
    {
        public readonly Action<Module, ForwardInputs, Tensor> Hook = hook;
    }

    /// <summary>Runs the module on one input, then its forward hooks (<see cref="RegisterForwardHook"/>).</summary>
    public Tensor Forward(Tensor input)
    {
        var output = ForwardCore(input);
        if (_forwardHooks is { } hooks) RunHooks(hooks, new ForwardInputs(input), output);
        return output;
    }

    /// <summary>
    /// Registers <paramref name="hook"/> to be called after every forward pass of this module (PyTorch's
    /// <c>register_forward_hook</c>) with the module, its inputs and the output it returns (the very tensor, not a copy);
    /// dispose the result to remove it. Every forward of a module fires its hooks once, after its children's: the
    /// single-input <see cref="Forward(Tensor)"/> and the forwards of two-input modules (CaiT's class attention,
    /// <see cref="ForwardInputs.Second"/> holding the context) alike; a <see cref="ModuleList"/>, which has no forward
    /// of its own, never fires (as in PyTorch). Hooks run in registration order; an exception from a hook propagates out
    /// of the forward.
    /// </summary>
    /// <remarks>
    /// <para>The inputs and output may be pooled storage of a <see cref="TensorScope"/>: clone what must outlive the
    /// scope. While a module has hooks, models do not free its tensors layer by layer during inference (they live until
    /// the end of the caller's scope, as without hooks in training).</para>
    /// <para>Attention layers report their softmax probabilities [B, H, N, M] through a child
    /// <see cref="AttentionProbabilities"/> module (key <c>attend</c>): a hook on it sees them as its output.</para>
    /// <para>A module without hooks pays one null check per forward and allocates nothing.</para>
    /// </remarks>
    /// <example>
    /// <code>
    /// using var handle = model.Transformer.RegisterForwardHook((module, inputs, output) => tokens = output.Clone());
    /// </code>
    /// </example>
    public IDisposable RegisterForwardHook(Action<Module, ForwardInputs, Tensor> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        var entry = new HookEntry(hook);
        lock (s_hookLock)
        {
            var old = _forwardHooks ?? [];
            var hooks = new HookEntry[old.Length + 1];
            old.CopyTo(hooks, 0);
            hooks[^1] = entry;
            _forwardHooks = hooks;
        }
        Interlocked.Increment(ref s_hookCount);
        return new HookHandle(this, entry);
    }

    private void RemoveHook(HookEntry entry)
    {
        lock (s_hookLock)
        {
            var old = _forwardHooks;
            if (old is null || Array.IndexOf(old, entry) < 0) return;
            var hooks = old.Where(e => !ReferenceEquals(e, entry)).ToArray();
            _forwardHooks = hooks.Length == 0 ? null : hooks;
        }
        Interlocked.Decrement(ref s_hookCount);
    }

    /// <summary>Removes a forward hook when disposed (again: nothing).</summary>
    private sealed class HookHandle(Module module, HookEntry entry) : IDisposable
    {
        private Module? _module = module;
        public void Dispose() { Interlocked.Exchange(ref _module, null)?.RemoveHook(entry); }
    }

    /// <summary>Whether this module has forward hooks.</summary>
    public bool HasForwardHooks => _forwardHooks is not null;

    /// <summary>Whether this module or any descendant has forward hooks (no walk at all while no module has any).</summary>
    public bool HasForwardHooksInTree() => Volatile.Read(ref s_hookCount) > 0 && AnyHooks();

    private bool AnyHooks()
    {
        if (_forwardHooks is not null) return true;
        foreach (var (_, child) in _children)
            if (child.AnyHooks()) return true;
        return false;
    }

    /// <summary>
    /// Runs this module's forward hooks on <paramref name="output"/> and returns it: the last step of a forward with
    /// another signature than <see cref="Forward(Tensor)"/> (two inputs, say), so that its hooks fire as every module's do.
    /// </summary>
    protected Tensor RunForwardHooks(Tensor input, Tensor? second, Tensor output)
    {
        if (_forwardHooks is { } hooks) RunHooks(hooks, new ForwardInputs(input, second), output);
        return output;
    }

    private void RunHooks(HookEntry[] hooks, ForwardInputs inputs, Tensor output)
    {
        foreach (var entry in hooks) entry.Hook(this, inputs, output);
    }

    /// <summary>The computation of a single-input module.</summary>
    protected virtual Tensor ForwardCore(Tensor input) =>
        throw new InvalidOperationException($"{GetType().Name} has no single-input forward");

    /// <summary>Registers a parameter (a tensor that requires a gradient) under <paramref name="name"/>.</summary>
    protected Tensor RegisterParameter(string name, Tensor value)
    {
        value.RequiresGrad = true;
        _parameters.Add((name, value));
        Interlocked.Increment(ref s_structureVersion);
        return value;
    }

    /// <summary>Registers a buffer (state that is saved but not trained).</summary>
    protected Tensor RegisterBuffer(string name, Tensor value)
    {
        _buffers.Add((name, value));
        return value;
    }

    /// <summary>Registers a child module under <paramref name="name"/>.</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        _children.Add((name, module));
        Interlocked.Increment(ref s_structureVersion);
        return module;
    }

    /// <summary>
    /// Replaces the child registered under <paramref name="name"/> (appending it when there is none); null removes it. The
    /// new child takes this module's training mode. For heads swapped at fine-tuning time.
    /// </summary>
    protected void ReplaceModule(string name, Module? module)
    {
        int i = _children.FindIndex(c => c.Name == name);
        Interlocked.Increment(ref s_structureVersion);
        if (module is null)
        {
            if (i >= 0) _children.RemoveAt(i);
            return;
        }
        module.Train(Training);
        if (i >= 0) _children[i] = (name, module);
        else _children.Add((name, module));
    }

    /// <summary>Direct children with their names.</summary>
    public IReadOnlyList<(string Name, Module Module)> NamedChildren() => _children;

    /// <summary>This module and all descendants with dotted names ("" for this one).</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        yield return (prefix, this);
        foreach (var (name, child) in _children)
            foreach (var m in child.NamedModules(Join(prefix, name))) yield return m;
    }

    /// <summary>All parameters with dotted names, in registration order.</summary>
    public IEnumerable<(string Name, Tensor Parameter)> NamedParameters(string prefix = "")
    {
        foreach (var (name, p) in _parameters) yield return (Join(prefix, name), p);
        foreach (var (name, child) in _children)
            foreach (var p in child.NamedParameters(Join(prefix, name))) yield return p;
    }

    /// <summary>All buffers with dotted names.</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers(string prefix = "")
    {
        foreach (var (name, b) in _buffers) yield return (Join(prefix, name), b);
        foreach (var (name, child) in _children)
            foreach (var b in child.NamedBuffers(Join(prefix, name))) yield return b;
    }

    /// <summary>All parameters, in registration order (a list kept between calls: no allocation per training step).</summary>
    public IEnumerable<Tensor> Parameters() => ParameterArray();

    private Tensor[] ParameterArray()
    {
        int version = Volatile.Read(ref s_structureVersion);
        if (Volatile.Read(ref _parameterCache) is { } cached && cached.Version == version) return cached.Parameters;
        var list = NamedParameters().Select(p => p.Parameter).ToArray();
        Volatile.Write(ref _parameterCache, new ParameterList(list, version));
        return list;
    }

    /// <summary>Total number of parameter elements.</summary>
    public long ParameterCount() => NamedParameters().Sum(p => (long)p.Parameter.Size);

    /// <summary>Sets training mode on this module and every descendant.</summary>
    public Module Train(bool training = true)
    {
        SetTraining(training);
        return this;
    }

    // A plain walk over the children (no names, no iterators): training loops call Train every step.
    private void SetTraining(bool training)
    {
        Training = training;
        foreach (var (_, child) in _children) child.SetTraining(training);
    }

    /// <summary>Sets evaluation mode (dropout off) on this module and every descendant.</summary>
    public Module Eval() => Train(false);

    /// <summary>
    /// Clears the gradients of all parameters: by default drops them (PyTorch's set_to_none=True, so parameters
    /// the next loss does not reach get no update); with <paramref name="setToNone"/> false, zeroes the existing
    /// buffers in place so that a training loop reuses them instead of allocating new ones every step.
    /// </summary>
    public void ZeroGrad(bool setToNone = true)
    {
        foreach (var p in ParameterArray())
        {
            if (setToNone) p.Grad = null;
            else if (p.Grad is not null) Array.Clear(p.Grad.Data);
        }
    }

    /// <summary>Parameters and buffers under their dotted names (the tensors themselves, not copies).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var sd = new Dictionary<string, Tensor>();
        foreach (var (n, p) in NamedParameters()) sd[n] = p;
        foreach (var (n, b) in NamedBuffers()) sd[n] = b;
        return sd;
    }

    /// <summary>
    /// Copies values from <paramref name="stateDict"/> into this module's parameters and buffers.
    /// With <paramref name="strict"/>, missing and unexpected keys are errors; a shape mismatch always is.
    /// The error names every offending key; nothing is copied unless every check passes.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> stateDict, bool strict = true)
    {
        var own = StateDict();
        var missing = own.Keys.Where(k => !stateDict.ContainsKey(k)).ToList();
        var unexpected = stateDict.Keys.Where(k => !own.ContainsKey(k)).ToList();
        var misShaped = own.Where(kv => stateDict.TryGetValue(kv.Key, out var v) && !v.SameShape(kv.Value))
            .Select(kv => $"{kv.Key} (expected {Tensor.ShapeString(kv.Value.ShapeSpan)}, got {Tensor.ShapeString(stateDict[kv.Key].ShapeSpan)})").ToList();
        if (misShaped.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new StateDictException(strict ? missing : new List<string>(), strict ? unexpected : new List<string>(), misShaped);
        foreach (var (key, dst) in own)
            if (stateDict.TryGetValue(key, out var src))
            {
                src.Data.AsSpan().CopyTo(dst.Data);
                if (dst.Packed is { } p) dst.Packed = Inference.PackedLinearWeights.Pack(dst, p.Precision, p.Path);  // converted weights follow
            }
    }

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;
}

/// <summary>
/// The inputs of a forward pass as a forward hook sees them (<see cref="Module.RegisterForwardHook"/>): one tensor, or two
/// for a two-input forward (CaiT's attention and class-attention layers: the tokens and the context; a distillable
/// ViT: the images and the distillation token). A struct: passing it allocates nothing.
/// </summary>
public readonly struct ForwardInputs
{
    /// <summary>The inputs <paramref name="input"/> and, when not null, <paramref name="second"/>.</summary>
    public ForwardInputs(Tensor input, Tensor? second = null) { Input = input; Second = second; }

    /// <summary>The (first) input.</summary>
    public Tensor Input { get; }
    /// <summary>The second input of a two-input forward, or null (a one-input forward, or a two-input one called without it).</summary>
    public Tensor? Second { get; }
    /// <summary>How many inputs there are: 1 or 2.</summary>
    public int Count => Second is null ? 1 : 2;

    /// <summary>Input <paramref name="index"/> (0 or 1 &lt; <see cref="Count"/>).</summary>
    public Tensor this[int index] => index switch
    {
        0 => Input,
        1 when Second is not null => Second,
        _ => throw new ArgumentOutOfRangeException(nameof(index), $"input {index} of a forward with {Count}"),
    };
}

/// <summary>A state_dict does not fit a module: lists every missing, unexpected and mis-shaped key.</summary>
public sealed class StateDictException : Exception
{
    /// <summary>Keys the module has and the state_dict lacks.</summary>
    public IReadOnlyList<string> Missing { get; }
    /// <summary>Keys the state_dict has and the module lacks.</summary>
    public IReadOnlyList<string> Unexpected { get; }
    /// <summary>Keys whose shapes differ, with both shapes.</summary>
    public IReadOnlyList<string> MisShaped { get; }

    /// <summary>Creates the exception.</summary>
    public StateDictException(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
        : base(Format(missing, unexpected, misShaped))
    {
        Missing = missing; Unexpected = unexpected; MisShaped = misShaped;
    }

    private static string Format(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"missing keys: {string.Join(", ", missing)}");
        if (unexpected.Count > 0) parts.Add($"unexpected keys: {string.Join(", ", unexpected)}");
        if (misShaped.Count > 0) parts.Add($"shape mismatch: {string.Join(", ", misShaped)}");
        return "state_dict does not fit the model: " + string.Join("; ", parts);
    }
}
