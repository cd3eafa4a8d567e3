using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>An unknown constructor name or a bad keyword argument for one.</summary>
public sealed class ModelConfigException(string message) : Exception(message);

/// <summary>
/// Builds models from the reference implementation's constructor name and keyword arguments (Python
/// names, tuples as JSON lists), as the fixtures' JSON spells them.
/// </summary>
public static class ModelFactory
{
    private static readonly Dictionary<string, Func<Kwargs, Module>> Builders = new()
    {
        [ViTConfig.Constructor] = k => new ViT(ViTConfig.FromKwargs(k)),
        [DistillableViT.ConstructorName] = k => new DistillableViT(ViTConfig.FromKwargs(k)),
        [DistillConfig.Constructor] = DistillWrapperFrom,
        [SimpleViTConfig.Constructor] = k => new SimpleViT(SimpleViTConfig.FromKwargs(k)),
        [DeepViTConfig.Constructor] = k => new DeepViT(DeepViTConfig.FromKwargs(k)),
        [CaiTConfig.Constructor] = k => new CaiT(CaiTConfig.FromKwargs(k)),
        [ResNetConfig.Constructor] = k => new ResNet(ResNetConfig.FromKwargs(k)),
        [VisionTransformerConfig.Constructor] = k => new VisionTransformer(VisionTransformerConfig.FromKwargs(k)),
        [T2TViTConfig.Constructor] = k => new T2TViT(T2TViTConfig.FromKwargs(k)),
        [PiTConfig.Constructor] = k => new PiT(PiTConfig.FromKwargs(k)),
        [DeiTConfig.Constructor] = k => new DistilledVisionTransformer(DeiTConfig.FromKwargs(k)),
        [SwinTransformerConfig.Constructor] = k => new SwinTransformer(SwinTransformerConfig.FromKwargs(k)),
    };

    /// <summary>The constructor names this factory knows.</summary>
    public static IReadOnlyCollection<string> KnownConstructors => Builders.Keys;

    /// <summary>Builds a model; throws <see cref="ModelConfigException"/> for unknown constructors or arguments.</summary>
    public static Module Create(string constructor, JsonObject? kwargs)
    {
        var key = Builders.Keys.FirstOrDefault(k => k == constructor || k.EndsWith("." + constructor, StringComparison.Ordinal));
        if (key is null)
            throw new ModelConfigException($"unknown constructor '{constructor}' (known: {string.Join(", ", Builders.Keys)})");
        var args = new Kwargs(key, kwargs ?? new JsonObject());
        Module model;
        try { model = Builders[key](args); }
        catch (ArgumentException e) { throw new ModelConfigException($"{key}: {e.Message}"); }
        args.CheckAllUsed();
        return model;
    }

    /// <summary>
    /// Reads vit_pytorch.distill.DistillWrapper's keyword arguments: <c>teacher</c> (any known constructor) and
    /// <c>student</c> (a DistillableViT) as nested {constructor, kwargs} objects, <c>temperature</c>, <c>alpha</c>,
    /// <c>hard</c>, <c>mlp_layernorm</c>. Builds the teacher first, then the student, then the wrapper's own parameters.
    /// </summary>
    public static DistillWrapper DistillWrapperFrom(Kwargs k)
    {
        var teacher = k.Model("teacher");
        var student = k.Model("student");
        if (student is not DistillableViT s)
            throw new ModelConfigException($"{DistillConfig.Constructor}: the student must be a {DistillableViT.ConstructorName}, got {student.GetType().Name}");
        return new DistillWrapper(teacher, s, DistillConfig.FromKwargs(k));
    }

    /// <summary>Keyword arguments of one constructor call; tracks which were read so leftovers are reported.</summary>
    public sealed class Kwargs(string constructor, JsonObject values)
    {
        private readonly HashSet<string> _used = new();

        /// <summary>The constructor these arguments are for (the start of every error message).</summary>
        public string Constructor => constructor;

        private JsonNode? Get(string name, bool required)
        {
            _used.Add(name);
            if (values.TryGetPropertyValue(name, out var node) && node is not null) return node;
            if (required) throw new ModelConfigException($"{constructor}: missing required argument '{name}'");
            return null;
        }

        private T Convert<T>(string name, JsonNode node, Func<JsonNode, T> f, string expected)
        {
            try { return f(node); }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            { throw new ModelConfigException($"{constructor}: argument '{name}' should be {expected}, got {node.ToJsonString()}"); }
        }

        /// <summary>An integer argument (required unless a default is given).</summary>
        public int Int(string name, int? fallback = null)
        {
            var n = Get(name, fallback is null);
            return n is null ? fallback!.Value : Convert(name, n, x => x.GetValue<int>(), "an integer");
        }

        /// <summary>An optional integer argument: null when absent or JSON null (Python's None).</summary>
        public int? IntOrNull(string name)
        {
            var n = Get(name, false);
            return n is null ? null : Convert(name, n, x => x.GetValue<int>(), "an integer or null");
        }

        /// <summary>
        /// An optional argument as raw JSON: null when absent or JSON null (Python's None). For arguments whose shape
        /// the caller checks itself (nested tuples, an int or a tuple).
        /// </summary>
        public JsonNode? Node(string name) => Get(name, false);

        /// <summary>A boolean argument.</summary>
        public bool Bool(string name, bool fallback)
        {
            var n = Get(name, false);
            return n is null ? fallback : Convert(name, n, x => x.GetValue<bool>(), "true or false");
        }

        /// <summary>A list of integers (required).</summary>
        public int[] IntList(string name)
        {
            var n = Get(name, true)!;
            if (n is not JsonArray arr) throw new ModelConfigException($"{constructor}: argument '{name}' should be a list of integers, got {n.ToJsonString()}");
            return arr.Select(e => e is null ? throw new ModelConfigException($"{constructor}: argument '{name}' should be a list of integers, got {n.ToJsonString()}")
                : Convert(name, e, x => x.GetValue<int>(), "a list of integers")).ToArray();
        }

        /// <summary>An optional list of booleans: null when absent or JSON null.</summary>
        public bool[]? BoolListOrNull(string name)
        {
            var n = Get(name, false);
            if (n is null) return null;
            if (n is not JsonArray arr) throw new ModelConfigException($"{constructor}: argument '{name}' should be a list of booleans or null, got {n.ToJsonString()}");
            return arr.Select(e => e is null ? throw new ModelConfigException($"{constructor}: argument '{name}' should be a list of booleans, got {n.ToJsonString()}")
                : Convert(name, e, x => x.GetValue<bool>(), "a list of booleans")).ToArray();
        }

        /// <summary>A float argument.</summary>
        public float Float(string name, float fallback)
        {
            var n = Get(name, false);
            return n is null ? fallback : Convert(name, n, x => float.Parse(x.AsValue().ToJsonString(), System.Globalization.CultureInfo.InvariantCulture), "a number");
        }

        /// <summary>A float argument read in double precision (for ratios that Python multiplies in double, e.g. timm's mlp_ratio).</summary>
        public double Double(string name, double fallback)
        {
            var n = Get(name, false);
            return n is null ? fallback : Convert(name, n, x => double.Parse(x.AsValue().ToJsonString(), System.Globalization.CultureInfo.InvariantCulture), "a number");
        }

        /// <summary>A string argument (required unless a fallback is given).</summary>
        public string String(string name, string? fallback = null)
        {
            var n = Get(name, fallback is null);
            return n is null ? fallback! : Convert(name, n, x => x.GetValue<string>(), "a string");
        }

        /// <summary>A nested model, given as a {constructor, kwargs} object (required), built by <see cref="Create"/>.</summary>
        public Module Model(string name)
        {
            var n = Get(name, true)!;
            if (n is not JsonObject obj || obj["constructor"] is not JsonValue cv || !cv.TryGetValue<string>(out var ctor))
                throw new ModelConfigException($"{constructor}: argument '{name}' should be a {{\"constructor\", \"kwargs\"}} object, got {n.ToJsonString()}");
            if (obj["kwargs"] is not null and not JsonObject)
                throw new ModelConfigException($"{constructor}: argument '{name}': 'kwargs' should be an object, got {obj["kwargs"]!.ToJsonString()}");
            var extra = obj.Select(kv => kv.Key).Where(key => key is not ("constructor" or "kwargs")).ToList();
            if (extra.Count > 0)
                throw new ModelConfigException($"{constructor}: argument '{name}' has unknown field(s) {string.Join(", ", extra.Select(e => $"'{e}'"))}");
            try { return Create(ctor, (JsonObject?)obj["kwargs"]?.DeepClone()); }
            catch (ModelConfigException e) { throw new ModelConfigException($"{constructor}: {name}: {e.Message}"); }
        }

        /// <summary>An int or an [a, b] pair (Python's <c>pair()</c>).</summary>
        public (int, int) Pair(string name)
        {
            var n = Get(name, true)!;
            if (n is JsonArray arr)
            {
                if (arr.Count != 2) throw new ModelConfigException($"{constructor}: argument '{name}' should be an int or a pair, got {n.ToJsonString()}");
                if (arr[0] is null || arr[1] is null) throw new ModelConfigException($"{constructor}: argument '{name}' should be an int or a pair, got {n.ToJsonString()}");
                return (Convert(name, arr[0]!, x => x.GetValue<int>(), "an int pair"), Convert(name, arr[1]!, x => x.GetValue<int>(), "an int pair"));
            }
            int v = Convert(name, n, x => x.GetValue<int>(), "an int or a pair");
            return (v, v);
        }

        /// <summary>Throws when an argument was given that the constructor does not take.</summary>
        public void CheckAllUsed()
        {
            var extra = values.Select(kv => kv.Key).Where(key => !_used.Contains(key)).ToList();
            if (extra.Count > 0) throw new ModelConfigException($"{constructor}: unknown argument(s) {string.Join(", ", extra.Select(e => $"'{e}'"))}");
        }
    }
}
