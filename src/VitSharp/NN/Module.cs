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

    /// <summary>Called after every <see cref="Forward(Tensor)"/> with the module and its output (used by summaries and recorders).</summary>
    [ThreadStatic] internal static Action<Module, Tensor>? ForwardHook;

    private List<Action<Module, Tensor>>? _forwardHooks;

    /// <summary>Runs the module on one input.</summary>
    public Tensor Forward(Tensor input)
    {
        var output = ForwardCore(input);
        ForwardHook?.Invoke(this, output);
        if (_forwardHooks is { Count: > 0 } hooks)
            foreach (var hook in hooks.ToArray()) hook(this, output);
        return output;
    }

    /// <summary>
    /// Registers <paramref name="hook"/> to be called with this module and its output after every
    /// <see cref="Forward(Tensor)"/> (PyTorch's <c>register_forward_hook</c>); dispose the result to remove it.
    /// The output may be pooled storage of a <see cref="TensorScope"/>: clone what must outlive the scope.
    /// </summary>
    public IDisposable RegisterForwardHook(Action<Module, Tensor> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        (_forwardHooks ??= new()).Add(hook);
        return new HookHandle(() => _forwardHooks.Remove(hook));
    }

    private sealed class HookHandle(Action remove) : IDisposable
    {
        private Action? _remove = remove;
        public void Dispose() { _remove?.Invoke(); _remove = null; }
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
            if (stateDict.TryGetValue(key, out var src)) src.Data.AsSpan().CopyTo(dst.Data);
    }

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;
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
