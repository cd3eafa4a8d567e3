namespace VitSharp.NN;

/// <summary>Seeded random source for parameter initialisation (thread-static; deterministic by default).</summary>
public static class Init
{
    [ThreadStatic] private static Random? _rng;

    /// <summary>The generator used by layer constructors on this thread.</summary>
    public static Random Rng => _rng ??= new Random(0);

    /// <summary>Reseeds the initialisation generator of this thread.</summary>
    public static void Seed(int seed) => _rng = new Random(seed);

    /// <summary>torch's <c>trunc_normal_(std=std)</c> (a = −2, b = 2 absolute): N(0, std²) drawn from <see cref="Rng"/>,
    /// values outside [−2, 2] redrawn.</summary>
    public static Tensor TruncNormal(float std, params int[] shape)
    {
        var t = Tensor.RandN(Rng, 0, std, shape);
        var d = t.Data;
        for (int i = 0; i < d.Length; i++)
            while (d[i] < -2f || d[i] > 2f) d[i] = Tensor.RandN(Rng, 0, std, 1).Data[0];
        return t;
    }
}

/// <summary>y = x·Wᵀ + b. Weight [out, in] initialised U(−1/√in, 1/√in) as torch.nn.Linear; keys <c>weight</c>, <c>bias</c>.</summary>
public sealed class Linear : Module
{
    /// <summary>Weight [out, in].</summary>
    public Tensor Weight { get; }
    /// <summary>Bias [out], or null.</summary>
    public Tensor? Bias { get; }
    /// <summary>Input features.</summary>
    public int InFeatures { get; }
    /// <summary>Output features.</summary>
    public int OutFeatures { get; }

    /// <summary>Creates the layer.</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true)
    {
        if (inFeatures < 0 || outFeatures < 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"Linear({inFeatures}, {outFeatures}): feature counts must be non-negative");
        InFeatures = inFeatures; OutFeatures = outFeatures;
        float bound = inFeatures > 0 ? 1f / MathF.Sqrt(inFeatures) : 0f;
        Weight = RegisterParameter("weight", Tensor.RandU(Init.Rng, -bound, bound, outFeatures, inFeatures));
        if (bias) Bias = RegisterParameter("bias", Tensor.RandU(Init.Rng, -bound, bound, outFeatures));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.Linear(input, Weight, Bias);
}

/// <summary>LayerNorm over the last dimension; keys <c>weight</c> (ones) and <c>bias</c> (zeros).</summary>
public sealed class LayerNorm : Module
{
    /// <summary>Scale [C].</summary>
    public Tensor Weight { get; }
    /// <summary>Shift [C].</summary>
    public Tensor Bias { get; }
    /// <summary>Added to the variance.</summary>
    public float Eps { get; }

    /// <summary>Creates the layer.</summary>
    public LayerNorm(int dim, float eps = 1e-5f)
    {
        Eps = eps;
        Weight = RegisterParameter("weight", Tensor.Ones(dim));
        Bias = RegisterParameter("bias", Tensor.Zeros(dim));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.LayerNorm(input, Weight, Bias, Eps);
}

/// <summary>Dropout with probability P in training mode; identity in evaluation mode.</summary>
public sealed class Dropout : Module
{
    [ThreadStatic] private static Random? _rng;

    /// <summary>Drop probability.</summary>
    public float P { get; }

    /// <summary>Creates the layer.</summary>
    public Dropout(float p = 0.5f)
    {
        if (p < 0 || p > 1) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability {p} is outside [0, 1]");
        P = p;
    }

    /// <summary>Reseeds the dropout generator of this thread.</summary>
    public static void Seed(int seed) => _rng = new Random(seed);

    /// <summary>The dropout generator of this thread (also drawn by stochastic layer dropping, so one seed covers both).</summary>
    internal static Random Rng => _rng ??= new Random(0);

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.Dropout(input, P, Training, Rng);
}

/// <summary>GELU activation (exact erf form).</summary>
public sealed class GELU : Module
{
    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input.Gelu();
}

/// <summary>ReLU activation.</summary>
public sealed class ReLU : Module
{
    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input.Relu();
}

/// <summary>Tanh activation.</summary>
public sealed class Tanh : Module
{
    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input.Tanh();
}

/// <summary>Returns its input.</summary>
public sealed class Identity : Module
{
    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input;
}

/// <summary>Children named "0", "1", … in order (the shared part of <see cref="Sequential"/> and <see cref="ModuleList"/>).</summary>
public abstract class IndexedModules : Module
{
    private readonly List<Module> _modules = new();

    /// <summary>Appends a module under the next index.</summary>
    public void Add(Module module)
    {
        RegisterModule(_modules.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        _modules.Add(module);
    }

    /// <summary>The i-th module.</summary>
    public Module this[int index] => _modules[index];

    /// <summary>Number of modules.</summary>
    public int Count => _modules.Count;

    /// <summary>The modules in order.</summary>
    public IReadOnlyList<Module> Items => _modules;
}

/// <summary>Runs child modules in order; children are named "0", "1", … as in torch.nn.Sequential.</summary>
public sealed class Sequential : IndexedModules
{
    /// <summary>Creates the container.</summary>
    public Sequential(params Module[] modules)
    {
        foreach (var m in modules) Add(m);
    }

    /// <inheritdoc/>
    /// <remarks>Without gradients, a <see cref="Linear"/> directly followed by a <see cref="GELU"/>, neither of them hooked,
    /// runs as the fused <see cref="F.LinearGelu"/> (the same values to float rounding; one pass over the output).</remarks>
    protected override Tensor ForwardCore(Tensor input) => ForwardRange(input, 0, Count);

    /// <summary>Runs modules [start, end) in order, with <see cref="ForwardCore"/>'s fusion (a block that adds its own
    /// last layer differently runs the rest through this).</summary>
    internal Tensor ForwardRange(Tensor input, int start, int end)
    {
        for (int i = start; i < end; i++)
        {
            if (this[i] is Linear linear && i + 1 < end && this[i + 1] is GELU gelu && !linear.HasForwardHooks && !gelu.HasForwardHooks
                && !Autograd.IsEnabled && F.FuseEpilogues)
            {
                input = F.LinearGelu(input, linear.Weight, linear.Bias);
                i++;
                continue;
            }
            input = this[i].Forward(input);
        }
        return input;
    }
}

/// <summary>A list of modules named "0", "1", … (as torch.nn.ModuleList); has no forward of its own.</summary>
public sealed class ModuleList : IndexedModules
{
    /// <summary>Creates the list.</summary>
    public ModuleList(params Module[] modules)
    {
        foreach (var m in modules) Add(m);
    }
}

/// <summary>
/// torch.nn.Sequential built from an OrderedDict: runs its children in order, each under its own name
/// (torchvision's <c>encoder.layers.encoder_layer_0</c>, <c>heads.head</c>, …).
/// </summary>
public sealed class NamedSequential : Module
{
    private readonly List<(string Name, Module Module)> _modules = new();

    /// <summary>Creates the container from (name, module) pairs in order.</summary>
    public NamedSequential(params (string Name, Module Module)[] modules)
    {
        foreach (var (name, m) in modules) Add(name, m);
    }

    /// <summary>Appends a module under <paramref name="name"/>.</summary>
    public void Add(string name, Module module)
    {
        if (_modules.Any(m => m.Name == name)) throw new ArgumentException($"NamedSequential already has a module '{name}'");
        RegisterModule(name, module);
        _modules.Add((name, module));
    }

    /// <summary>The module registered under <paramref name="name"/>, or null.</summary>
    public Module? this[string name] => _modules.FirstOrDefault(m => m.Name == name).Module;

    /// <summary>Number of modules.</summary>
    public int Count => _modules.Count;

    /// <summary>The modules in order.</summary>
    public IEnumerable<Module> Modules => _modules.Select(m => m.Module);

    /// <summary>Replaces the module under <paramref name="name"/> in place (appends it when absent); null removes it.</summary>
    public void Replace(string name, Module? module)
    {
        int i = _modules.FindIndex(m => m.Name == name);
        ReplaceModule(name, module);
        if (module is null) { if (i >= 0) _modules.RemoveAt(i); }
        else if (i >= 0) _modules[i] = (name, module);
        else _modules.Add((name, module));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input)
    {
        foreach (var (_, m) in _modules) input = m.Forward(input);
        return input;
    }
}
