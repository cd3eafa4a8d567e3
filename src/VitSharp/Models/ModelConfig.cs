using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;

namespace VitSharp.Models;

/// <summary>
/// Binds a configuration property to the reference constructor's keyword argument <see cref="Name"/> (its Python name).
/// The property's initial value is the Python default; a <c>required</c> property is a required argument. The same
/// binding reads the arguments (<see cref="ModelConfig{TSelf}.FromKwargs"/>), writes them back
/// (<see cref="ModelConfig{TSelf}.ToKwargs"/>) in declaration order, and checks the bounds given here
/// (<see cref="ModelConfig{TSelf}.Validate"/>), each with a one-line message naming the argument.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class KwargAttribute(string name) : Attribute
{
    /// <summary>The Python argument name.</summary>
    public string Name { get; } = name;
    /// <summary>Smallest allowed value of an int (each element of an int list); <see cref="int.MinValue"/>: no bound.</summary>
    public int Min { get; init; } = int.MinValue;
    /// <summary>Largest allowed value of an int (each element of an int list, both of a pair); by default
    /// <see cref="DefaultMax"/>, a bound no real model comes near, so that a hostile configuration is refused before
    /// anything is allocated for it.</summary>
    public int Max { get; init; } = DefaultMax;
    /// <summary>The default <see cref="Max"/>: 2^24.</summary>
    public const int DefaultMax = 1 << 24;
    /// <summary>A float that must lie in [0, 1] (a dropout rate, a probability).</summary>
    public bool Rate { get; init; }
    /// <summary>The allowed values of a string (e.g. pool: "cls", "mean").</summary>
    public string[]? OneOf { get; init; }
    /// <summary>
    /// Python's <c>pair()</c>: this int property and the one named here are read from an int or an [a, b] list and written
    /// as an int when they agree (image_size → ImageHeight, ImageWidth).
    /// </summary>
    public string? PairWith { get; init; }
    /// <summary>A type implementing <see cref="IKwargConverter"/>, for arguments of other shapes (tuples of tuples, an int or a tuple).</summary>
    public Type? Converter { get; init; }
}

/// <summary>Reads and writes a keyword argument of a shape the plain bindings do not cover.</summary>
public interface IKwargConverter
{
    /// <summary>The property value for the JSON <paramref name="node"/> (never null: absent arguments keep their default);
    /// <paramref name="config"/> holds the arguments declared before this one. Throws an <see cref="ArgumentException"/>
    /// with a one-line message for a bad value.</summary>
    object Read(JsonNode node, object config);
    /// <summary>The JSON the reference constructor takes for <paramref name="value"/>.</summary>
    JsonNode? Write(object? value);
}

/// <summary>
/// Base of the model configurations: a record whose <see cref="KwargAttribute"/> properties are the reference
/// constructor's keyword arguments. Each configuration declares its Python constructor name once, as
/// <c>public const string Constructor</c>, used by the factory, the presets and the specs.
/// </summary>
public abstract record ModelConfig<TSelf> where TSelf : ModelConfig<TSelf>
{
    /// <summary>Reads the reference constructor's keyword arguments (Python's defaults for those not given).</summary>
    public static TSelf FromKwargs(ModelFactory.Kwargs k) => KwargBinding<TSelf>.Read(k);

    /// <summary>The configuration as the reference constructor's keyword arguments (Python names), for checkpoints and the factory.</summary>
    public JsonObject ToKwargs() => KwargBinding<TSelf>.Write((TSelf)this);

    /// <summary>The model spec (constructor and keyword arguments) of this configuration.</summary>
    public ModelSpec ToSpec() => new(KwargBinding<TSelf>.Constructor, ToKwargs());

    /// <summary>Checks the configuration: the bounds of its <see cref="KwargAttribute"/>s, then <see cref="CheckMore"/>;
    /// throws an <see cref="ArgumentException"/> with a one-line message naming the argument.</summary>
    public void Validate()
    {
        KwargBinding<TSelf>.CheckBounds((TSelf)this);
        CheckMore();
    }

    /// <summary>The family's own checks (divisibility, shapes that depend on several arguments).</summary>
    protected virtual void CheckMore() { }
}

/// <summary>The configuration of an image model: the images the model takes.</summary>
public interface IImageConfig
{
    /// <summary>Channels, height and width of the input images; height and width are null when any size works.</summary>
    (int Channels, int? Height, int? Width) Input { get; }
}

/// <summary>
/// Base of the image model families: validates and keeps the configuration, and answers <see cref="IImageModel"/> and
/// the input check from its <see cref="IImageConfig.Input"/>.
/// </summary>
public abstract class ImageModel<TConfig> : NN.Module, IImageModel where TConfig : ModelConfig<TConfig>, IImageConfig
{
    /// <summary>Validates <paramref name="config"/> (an <see cref="ArgumentException"/> naming the argument) and keeps it.</summary>
    protected ImageModel(TConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>The configuration this model was built from (NumClasses follows a ResetClassifier).</summary>
    public TConfig Config { get; protected set; }
    /// <inheritdoc/>
    public int InputChannels => Config.Input.Channels;
    /// <inheritdoc/>
    public int? InputHeight => Config.Input.Height;
    /// <inheritdoc/>
    public int? InputWidth => Config.Input.Width;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the expected and the actual shape unless <paramref name="img"/> is
    /// an image batch this model takes.</summary>
    public virtual void CheckInput(Tensor img) => ImageInput.Check(img, InputChannels, InputHeight, InputWidth);
}

/// <summary>The checks several configurations share, with one wording: each message names the argument(s) and the value.</summary>
public static class Check
{
    /// <summary>Throws unless <paramref name="value"/> ≥ <paramref name="min"/>.</summary>
    public static void AtLeast(int value, int min, string name)
    {
        if (value < min) throw new ArgumentException($"{name} must be ≥ {min}, got {value}");
    }

    /// <summary>Throws unless <paramref name="value"/> lies in [0, 1] (a dropout rate, a probability).</summary>
    public static void Rate(float value, string name)
    {
        if (!(value >= 0 && value <= 1)) throw new ArgumentException($"{name} must lie in [0, 1], got {Fmt(value)}");
    }

    /// <summary>Throws unless <paramref name="value"/> is one of <paramref name="allowed"/>.</summary>
    public static void OneOf(string value, string name, params string[] allowed)
    {
        if (Array.IndexOf(allowed, value) < 0)
            throw new ArgumentException($"{name} must be {string.Join(" or ", allowed.Select(a => $"'{a}'"))}, got '{value}'");
    }

    /// <summary>Throws unless the patch divides the image in both directions ("image_size 10 is not divisible by patch_size 4").</summary>
    public static void Divisible((int H, int W) image, (int H, int W) patch, string imageName = "image_size", string patchName = "patch_size")
    {
        if (image.H % patch.H != 0 || image.W % patch.W != 0)
            throw new ArgumentException($"{imageName} {Size(image)} is not divisible by {patchName} {Size(patch)}");
    }

    /// <summary>Throws unless attention has at least one head of at least one dimension.</summary>
    public static void Heads(int heads, int dimHead)
    {
        AtLeast(heads, 1, "heads");
        AtLeast(dimHead, 1, "dim_head");
    }

    /// <summary>An int, or h×w when the two differ (the way an image or patch size is named in messages).</summary>
    public static string Size((int H, int W) s) => s.H == s.W ? $"{s.H}" : $"{s.H}×{s.W}";

    internal static string Fmt(float v) => v.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// The keyword-argument table of one configuration type, built once from its <see cref="KwargAttribute"/>s: reads
/// <see cref="ModelFactory.Kwargs"/> (so unknown arguments, wrong types and missing ones are reported as before), writes
/// the Python keyword arguments and checks the bounds.
/// </summary>
internal static class KwargBinding<T> where T : class
{
    private sealed record Row(string Name, PropertyInfo Property, PropertyInfo? Second, KwargAttribute Attr, bool Required, IKwargConverter? Converter);

    /// <summary>The configuration's <c>Constructor</c> constant.</summary>
    public static readonly string Constructor =
        typeof(T).GetField("Constructor", BindingFlags.Public | BindingFlags.Static)?.GetRawConstantValue() as string
        ?? throw new InvalidOperationException($"{typeof(T).Name} declares no 'public const string Constructor'");

    private static readonly Row[] Rows = typeof(T)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Select(p => (p, a: p.GetCustomAttribute<KwargAttribute>()))
        .Where(x => x.a is not null)
        .OrderBy(x => x.p.MetadataToken)   // declaration order: the order the keyword arguments are written in
        .Select(x => new Row(x.a!.Name, x.p, x.a.PairWith is { } second ? typeof(T).GetProperty(second)! : null, x.a,
            x.p.GetCustomAttribute<RequiredMemberAttribute>() is not null,
            x.a.Converter is { } ct ? (IKwargConverter)Activator.CreateInstance(ct)! : null))
        .ToArray();

    /// <summary>A configuration with Python's defaults and the given arguments.</summary>
    public static T Read(ModelFactory.Kwargs k)
    {
        var config = (T)Activator.CreateInstance(typeof(T))!;   // the record's initial values are Python's defaults
        foreach (var r in Rows)
        {
            var p = r.Property;
            object? fallback = p.GetValue(config);
            if (r.Second is not null)
            {
                var (a, b) = k.Pair(r.Name);
                p.SetValue(config, a);
                r.Second.SetValue(config, b);
                continue;
            }
            if (r.Converter is not null)
            {
                var node = k.Node(r.Name);
                if (node is not null) p.SetValue(config, r.Converter.Read(node, config));
                else if (r.Required) throw new ModelConfigException($"{k.Constructor}: missing required argument '{r.Name}'");
                continue;
            }
            var t = p.PropertyType;
            object? value =
                t == typeof(int) ? k.Int(r.Name, r.Required ? null : (int)fallback!) :
                t == typeof(int?) ? k.IntOrNull(r.Name) ?? (int?)fallback :
                t == typeof(float) ? k.Float(r.Name, (float)fallback!) :
                t == typeof(double) ? k.Double(r.Name, (double)fallback!) :
                t == typeof(bool) ? k.Bool(r.Name, (bool)fallback!) :
                t == typeof(string) ? k.String(r.Name, r.Required ? null : (string)fallback!) :
                t == typeof(int[]) ? k.IntList(r.Name) :
                throw new InvalidOperationException($"{typeof(T).Name}.{p.Name}: no keyword binding for {t.Name}");
            p.SetValue(config, value);
        }
        return config;
    }

    /// <summary>The keyword arguments, in declaration order.</summary>
    public static JsonObject Write(T config)
    {
        var o = new JsonObject();
        foreach (var r in Rows)
        {
            object? v = r.Property.GetValue(config);
            o[r.Name] = r.Second is not null
                ? ((int)v! == (int)r.Second.GetValue(config)! ? (JsonNode)(int)v : new JsonArray((int)v, (int)r.Second.GetValue(config)!))
                : r.Converter is not null ? r.Converter.Write(v)
                : v switch
                {
                    null => null,
                    int i => i, float f => f, double d => d, bool b => b, string s => s,
                    int[] a => new JsonArray(a.Select(x => (JsonNode)x).ToArray()),
                    _ => throw new InvalidOperationException($"{typeof(T).Name}.{r.Property.Name}: no keyword binding for {v.GetType().Name}"),
                };
        }
        return o;
    }

    /// <summary>The bounds the attributes declare (Min, Rate, OneOf).</summary>
    public static void CheckBounds(T config)
    {
        foreach (var r in Rows)
        {
            object? v = r.Property.GetValue(config);
            var a = r.Attr;
            if (a.Min != int.MinValue)
            {
                if (r.Second is not null)
                {
                    int h = (int)v!, w = (int)r.Second.GetValue(config)!;
                    if (h < a.Min || w < a.Min) throw new ArgumentException($"{a.Name} must be ≥ {a.Min}, got {Check.Size((h, w))}");
                }
                else if (v is int i) Check.AtLeast(i, a.Min, a.Name);
                else if (v is int[] list && list.Any(x => x < a.Min))
                    throw new ArgumentException($"{a.Name} must be ≥ {a.Min}, got [{string.Join(", ", list)}]");
            }
            if (r.Second is not null)
            {
                int h = (int)v!, w = (int)r.Second.GetValue(config)!;
                if (h > a.Max || w > a.Max) throw new ArgumentException($"{a.Name} must be ≤ {a.Max}, got {Check.Size((h, w))}");
            }
            else if (v is int big && big > a.Max) throw new ArgumentException($"{a.Name} must be ≤ {a.Max}, got {big}");
            else if (v is int[] bigList && bigList.Any(x => x > a.Max))
                throw new ArgumentException($"{a.Name} must be ≤ {a.Max}, got [{string.Join(", ", bigList)}]");
            if (a.Rate && v is float f) Check.Rate(f, a.Name);
            if (a.OneOf is not null) Check.OneOf((string)v!, a.Name, a.OneOf);
        }
    }
}
