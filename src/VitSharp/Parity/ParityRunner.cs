using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Parity;

/// <summary>One compared quantity: its largest absolute error and that error relative to the reference's largest magnitude.</summary>
public sealed record ParityRow(string Name, double MaxAbsError, double RelativeError, double Tolerance, bool Passed, string? Note = null);

/// <summary>The outcome of a parity run.</summary>
public sealed record ParityReport(string Prefix, string Constructor, IReadOnlyList<ParityRow> Rows)
{
    /// <summary>Whether every row is within tolerance.</summary>
    public bool Passed => Rows.Count > 0 && Rows.All(r => r.Passed);
}

/// <summary>A fixture is missing, malformed or names something we cannot build.</summary>
public sealed class ParityException(string message) : Exception(message);

/// <summary>
/// Checks a model against a PyTorch fixture (PREFIX.json, PREFIX.weights.safetensors, PREFIX.io.safetensors):
/// builds it from the JSON's constructor and kwargs, loads the weights strictly, runs forward and backward in
/// eval mode and compares logits, loss, every gradient and (where present) one AdamW step. The loss is mean
/// cross-entropy, or the model's own loss when it is an <see cref="ILossModel"/> (DistillWrapper's distillation loss).
/// </summary>
public static class ParityRunner
{
    /// <summary>Logits and loss: max abs error ≤ tol, or ≤ tol relative to the reference's max magnitude.</summary>
    public const double OutputTolerance = 1e-4;
    /// <summary>Gradients: max abs error ≤ tol × the reference gradient's max magnitude.</summary>
    public const double GradientTolerance = 1e-3;
    /// <summary>Parameters after one AdamW step: max abs error.</summary>
    public const double AdamWTolerance = 1e-5;

    /// <summary>Runs the comparison.</summary>
    public static ParityReport Run(string prefix)
    {
        string jsonPath = prefix + ".json", weightsPath = prefix + ".weights.safetensors", ioPath = prefix + ".io.safetensors";
        foreach (var p in new[] { jsonPath, weightsPath, ioPath })
            if (!File.Exists(p)) throw new ParityException($"{p}: file not found");
        JsonObject spec;
        try { spec = JsonNode.Parse(File.ReadAllText(jsonPath)) as JsonObject ?? throw new ParityException($"{jsonPath}: not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new ParityException($"{jsonPath}: malformed JSON ({e.Message.Split('\n')[0]})"); }
        if (spec["constructor"] is not JsonValue cv || !cv.TryGetValue<string>(out var constructor))
            throw new ParityException($"{jsonPath}: 'constructor' must be a string naming the Python class");
        if (spec["kwargs"] is not null and not JsonObject)
            throw new ParityException($"{jsonPath}: 'kwargs' must be an object of keyword arguments");
        // Validate before you allocate: the model may not outgrow the weights that come with it.
        var weights = Weights.Load(weightsPath);
        long weightElements = weights.Values.Sum(t => (long)t.Size);
        Module model;
        try { model = new ModelSpec(constructor, spec["kwargs"] as JsonObject ?? new JsonObject()).BuildFor(weightElements, jsonPath); }
        catch (ModelConfigException e) { throw new ParityException(e.Message.StartsWith(jsonPath, StringComparison.Ordinal) ? e.Message : $"{jsonPath}: {e.Message}"); }
        foreach (var (name, t) in weights)
            if (!AllFinite(t.Data))
                throw new ParityException($"{weightsPath}: tensor '{name}' holds non-finite values (NaN or ±∞)");
        model.LoadStateDict(weights, strict: true);
        model.Eval();

        using var io = SafeTensorsFile.Open(ioPath);
        var input = new Tensor(io.ReadFloat32("input"), io.Info("input").Shape);
        var labels = io.ReadInt64("labels").Select((l, i) => l is >= 0 and <= int.MaxValue ? (int)l
            : throw new ParityException($"{ioPath}: 'labels'[{i}] is {l}, not a class index")).ToArray();

        var rows = new List<ParityRow>();
        model.ZeroGrad();
        var logits = model.Forward(input);
        rows.Add(Compare("logits", logits.Data, io.ReadFloat32("logits"), OutputTolerance, output: true));
        // Models with their own training loss (DistillWrapper: cross-entropy plus distillation) use it; the fixture's
        // logits are then the model's plain forward (for DistillWrapper, the student without the distillation token).
        var lossModel = model as ILossModel;
        var loss = lossModel is null ? F.CrossEntropy(logits, labels) : lossModel.ComputeLoss(input, labels).Loss;
        rows.Add(Compare("loss", loss.Data, io.ReadFloat32("loss"), OutputTolerance, output: true));
        loss.Backward();

        var parameters = model.NamedParameters().ToList();
        foreach (var (name, p) in parameters)
        {
            string key = "grad." + name;
            if (!io.Contains(key))
            {
                // A loss model's parameters without a reference gradient (a distillation teacher) must not get one.
                if (lossModel is not null && p.Grad is not null)
                    rows.Add(new ParityRow(key, double.NaN, double.NaN, GradientTolerance, false, "received a gradient; the reference has none"));
                continue;
            }
            var reference = io.ReadFloat32(key);
            // A parameter with no elements (vit-pytorch's [0, dim] class token with mean pooling) has an empty gradient in
            // PyTorch whether or not the graph reached it.
            var grad = p.Grad?.Data ?? (p.Size == 0 ? [] : null);
            if (grad is null)
                rows.Add(new ParityRow(key, double.NaN, double.NaN, GradientTolerance, false, "no gradient reached this parameter"));
            else
                rows.Add(Compare(key, grad, reference, GradientTolerance, output: false));
        }
        foreach (var info in io.Tensors.Where(t => t.Name.StartsWith("grad.", StringComparison.Ordinal)))
            if (!parameters.Any(p => "grad." + p.Name == info.Name))
                rows.Add(new ParityRow(info.Name, double.NaN, double.NaN, GradientTolerance, false, "the model has no such parameter"));

        if (io.Tensors.Any(t => t.Name.StartsWith("adamw.", StringComparison.Ordinal)))
        {
            var opt = new Optim.AdamW(parameters, lr: 1e-3f, beta1: 0.9f, beta2: 0.999f, eps: 1e-8f, weightDecay: 0.05f);
            opt.Step();
            foreach (var (name, p) in parameters)
            {
                string key = "adamw." + name;
                if (!io.Contains(key)) continue;
                var reference = io.ReadFloat32(key);
                double maxAbs = MaxAbsDiff(p.Data, reference);
                rows.Add(new ParityRow(key, maxAbs, maxAbs / Math.Max(MaxAbs(reference), 1e-30), AdamWTolerance, maxAbs <= AdamWTolerance));
            }
        }
        return new ParityReport(prefix, constructor, rows);
    }

    private static ParityRow Compare(string name, float[] actual, float[] expected, double tol, bool output)
    {
        if (actual.Length != expected.Length)
            return new ParityRow(name, double.NaN, double.NaN, tol, false, $"{actual.Length} values, reference has {expected.Length}");
        double maxAbs = MaxAbsDiff(actual, expected);
        double scale = MaxAbs(expected);
        double rel = maxAbs / Math.Max(scale, 1e-30);
        bool ok = output ? (maxAbs <= tol || rel <= tol) : (maxAbs <= tol * scale || maxAbs == 0);
        return new ParityRow(name, maxAbs, rel, tol, ok && !double.IsNaN(maxAbs));
    }

    private static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            if (double.IsNaN(d)) return double.NaN;
            m = Math.Max(m, d);
        }
        return m;
    }

    private static bool AllFinite(ReadOnlySpan<float> a)
    {
        foreach (var v in a) if (!float.IsFinite(v)) return false;
        return true;
    }

    private static double MaxAbs(ReadOnlySpan<float> a)
    {
        double m = 0;
        foreach (var v in a) m = Math.Max(m, Math.Abs(v));
        return m;
    }
}
