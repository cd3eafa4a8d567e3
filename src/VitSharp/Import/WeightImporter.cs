using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Import;

/// <summary>Pretrained weights that cannot be imported: an unreadable file, an architecture the keys do not reveal, a missing
/// argument, keys that do not fit. The message names the file and the key or argument.</summary>
public sealed class ImportException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The file formats <see cref="WeightImporter"/> reads.</summary>
public enum WeightFormat
{
    /// <summary>A VitSharp checkpoint (safetensors with VitSharp's metadata).</summary>
    VitSharpCheckpoint,
    /// <summary>A bare state_dict in safetensors (timm's and the Hugging Face hub's files).</summary>
    SafeTensors,
    /// <summary><c>torch.save</c>'s zip format (torch ≥ 1.6): .pth, .pt, .bin.</summary>
    TorchZip,
    /// <summary><c>torch.save</c>'s legacy format (before torch 1.6).</summary>
    TorchLegacy,
    /// <summary>numpy's .npz (Google's JAX/Flax ViT releases).</summary>
    Npz,
    /// <summary>A Hugging Face <c>transformers</c> snapshot folder (config.json with the weights beside it).</summary>
    HuggingFace,
}

/// <summary>What <see cref="WeightImporter.Import"/> needs besides the file.</summary>
public sealed record ImportOptions
{
    /// <summary>A model preset (see <see cref="Presets"/>) for what the weights do not say (a ViT's head count) or for
    /// families whose keys are not recognised; its arguments that the shapes fix are taken from the shapes.</summary>
    public string? Model { get; init; }
    /// <summary>Constructor arguments by their Python names (as <c>--set NAME=VALUE</c>), applied last.</summary>
    public IReadOnlyDictionary<string, string>? ModelArgs { get; init; }
    /// <summary>Class names: "imagenet" (the 1,000 shipped with VitSharp) or a file (see <see cref="ClassNames.Load"/>);
    /// null: the source's own (Hugging Face's id2label), else ImageNet's for 1,000 classes, else "0", "1", ….</summary>
    public string? Classes { get; init; }
    /// <summary>Load weights holding NaN or ±∞ (reported through <see cref="Warn"/>) instead of refusing them.</summary>
    public bool AllowNonFinite { get; init; }
    /// <summary>Receives one-line warnings (non-finite weights allowed by <see cref="AllowNonFinite"/>).</summary>
    public Action<string>? Warn { get; init; }

    internal CheckpointLoadOptions LoadOptions => new() { AllowNonFinite = AllowNonFinite, Warn = Warn };
}

/// <summary>An imported model: built, with the weights loaded, its spec, and how its images are prepared.</summary>
/// <param name="Source">The file or folder read.</param>
/// <param name="Format">Its format.</param>
/// <param name="Architecture">The family its keys revealed (<see cref="WeightArchitecture.Unknown"/> when a preset said).</param>
/// <param name="Model">The model, weights loaded, in evaluation mode.</param>
/// <param name="Spec">Its constructor and every argument that changes the computation (PyTorch can rebuild it from these).</param>
/// <param name="Data">Class names and preprocessing.</param>
/// <param name="Notes">Assumptions made on the way (e.g. a head count taken from the convention), for the user to read.</param>
public sealed record ImportedModel(string Source, WeightFormat Format, WeightArchitecture Architecture, Module Model, ModelSpec Spec,
    DataInfo Data, IReadOnlyList<string> Notes)
{
    /// <summary>The checkpoint metadata: spec, data info, and where the weights came from.</summary>
    public CheckpointInfo Info => new(Spec, Data.ToJson(), new JsonObject
    {
        ["imported_from"] = Path.GetFullPath(Source), ["format"] = Format.ToString(),
        ["notes"] = new JsonArray(Notes.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()),
    });

    /// <summary>Writes it as a VitSharp checkpoint (atomically).</summary>
    public void Save(string path) => Checkpoint.Save(path, Model, Info);

    /// <summary>As a loaded checkpoint (no optimizer state), for everything that takes one.</summary>
    public LoadedCheckpoint ToCheckpoint() => new(Source, Model, Info, new Dictionary<string, Tensor>());
}

/// <summary>
/// Brings pretrained weights in from the formats the ecosystem ships them in — <c>torch.save</c> files (.pth, .pt, .bin;
/// zip and legacy), safetensors (timm, the hub), Google's .npz, Hugging Face snapshot folders, VitSharp checkpoints —
/// recognises the family from the keys (torchvision ViT, timm ViT and DeiT, DeiT distilled, torchvision ResNet), reads
/// the constructor arguments off the shapes and builds the model with the weights loaded. Nothing in a file is executed.
/// </summary>
public static class WeightImporter
{
    /// <summary>The format of a file or folder, from its first bytes (not its name).</summary>
    public static WeightFormat Detect(string path)
    {
        if (Directory.Exists(path))
        {
            if (File.Exists(Path.Combine(path, "config.json"))) return WeightFormat.HuggingFace;
            throw new ImportException($"{path}: a folder without config.json (a Hugging Face snapshot folder holds config.json and the weights)");
        }
        if (!File.Exists(path)) throw new ImportException($"{path}: no such file or folder");
        Span<byte> head = stackalloc byte[16];
        int n;
        using (var f = File.OpenRead(path)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        head = head[..n];
        if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] is 3 or 5 && head[3] is 4 or 6)
            return IsNpz(path) ? WeightFormat.Npz : WeightFormat.TorchZip;
        if (n >= 2 && head[0] == 0x80 && head[1] <= 5) return WeightFormat.TorchLegacy;
        if (n >= 9 && head[8] == '{')
        {
            using var st = SafeTensorsFile.Open(path);
            return st.Metadata.TryGetValue("format", out var fmt) && fmt == Checkpoint.Format ? WeightFormat.VitSharpCheckpoint : WeightFormat.SafeTensors;
        }
        throw new ImportException($"{path}: not a weights file VitSharp reads (not a zip, a pickle or safetensors: it starts with {Convert.ToHexString(head[..Math.Min(n, 8)])})");
    }

    private static bool IsNpz(string path)
    {
        try
        {
            using var zip = System.IO.Compression.ZipFile.OpenRead(path);
            return zip.Entries.Count > 0 && zip.Entries.All(e => e.FullName.EndsWith(".npy", StringComparison.Ordinal));
        }
        catch (InvalidDataException) { return false; }   // the torch reader names what is wrong with it
    }

    /// <summary>Reads a file's tensors under its own key names (a torch file's state_dict found as <see cref="TorchFile.LoadStateDict"/> does).</summary>
    public static Dictionary<string, Tensor> ReadTensors(string path, WeightFormat format) => format switch
    {
        WeightFormat.SafeTensors or WeightFormat.VitSharpCheckpoint => Weights.Load(path),
        WeightFormat.TorchZip or WeightFormat.TorchLegacy => TorchFile.LoadStateDict(path),
        WeightFormat.Npz => Npz.Load(path),
        _ => throw new ImportException($"{path}: a {format} source is not a single tensor file"),
    };

    /// <summary>
    /// Any checkpoint-like source as a loaded checkpoint: a VitSharp checkpoint as <see cref="Checkpoint.Load(string, CheckpointLoadOptions?)"/> reads it,
    /// anything else imported (<see cref="Import"/>). Every command that takes a checkpoint goes through this.
    /// </summary>
    public static LoadedCheckpoint LoadCheckpoint(string path, ImportOptions? options = null)
    {
        if (!Directory.Exists(path) && !File.Exists(path)) throw new CheckpointException($"{path}: checkpoint not found");
        return Detect(path) == WeightFormat.VitSharpCheckpoint ? Checkpoint.Load(path, options?.LoadOptions) : Import(path, options).ToCheckpoint();
    }

    /// <summary>Imports <paramref name="source"/> (a file or a Hugging Face folder): see <see cref="WeightImporter"/>.</summary>
    public static ImportedModel Import(string source, ImportOptions? options = null)
    {
        options ??= new ImportOptions();
        var format = Detect(source);
        var notes = new List<string>();
        if (format == WeightFormat.VitSharpCheckpoint)
        {
            var ck = Checkpoint.Load(source, options.LoadOptions);
            var data = DataInfo.FromJson(ck.Info.Data, source);
            if (options.Classes is { } cls) data = data with { ClassNames = ClassList(ClassNames.Resolve(cls), data.ClassNames.Count, source, cls) };
            return new ImportedModel(source, format, WeightArchitecture.Unknown, ck.Model, ck.Info.Model, data, notes);
        }
        if (format == WeightFormat.HuggingFace) return ImportHuggingFace(source, options, notes);
        if (format == WeightFormat.Npz) return ImportGoogle(source, options, notes);

        var raw = ReadTensors(source, format);
        var arch = ArchitectureInference.Detect(raw);
        var preset = options.Model is { } name ? Presets.Get(name) : null;
        int? heads = HeadsGiven(options, preset);
        Dictionary<string, Tensor> sd;
        ModelSpec spec;
        switch (arch)
        {
            case WeightArchitecture.TorchvisionViT:
            case WeightArchitecture.TimmViT:
                sd = arch == WeightArchitecture.TimmViT ? FromTimm(raw, source) : raw;
                spec = Merge(preset, ArchitectureInference.Constructor(arch), ArchitectureInference.TorchvisionViTKwargs(sd, source, heads, notes), source);
                break;
            case WeightArchitecture.DeiTDistilled:
                sd = raw;
                spec = Merge(preset, ArchitectureInference.Constructor(arch), ArchitectureInference.DeiTKwargs(sd, source, heads, notes), source);
                break;
            case WeightArchitecture.ResNet:
                sd = raw;
                spec = Merge(preset, ArchitectureInference.Constructor(arch), ArchitectureInference.ResNetKwargs(sd, source), source);
                break;
            case WeightArchitecture.Swin:
                sd = raw;
                spec = Merge(preset, ArchitectureInference.Constructor(arch), ArchitectureInference.SwinKwargs(sd, source), source);
                break;
            default:
                if (preset is null)
                    throw new ImportException($"{source}: the keys ({string.Join(", ", raw.Keys.Take(4))}, …) are not a torchvision ViT, ResNet or Swin, " +
                        "a timm ViT or a DeiT; say which model they belong to with --model PRESET (and --set NAME=VALUE)");
                sd = raw;
                spec = preset.Spec;
                break;
        }
        spec = ApplySet(spec, options, source);
        var model = BuildAndLoad(spec, sd, source, options);
        var prep = DefaultPreprocessing(arch, model, notes);
        var data2 = MakeData(source, model, prep, options, null, notes);
        return new ImportedModel(source, format, arch, model, spec, data2, notes);
    }

    private static int? HeadsGiven(ImportOptions options, Preset? preset)
    {
        if (options.ModelArgs is { } set && set.TryGetValue("num_heads", out var h))
            return int.TryParse(h, out int v) ? v : throw new ImportException($"--set num_heads={h}: not an integer");
        if (preset?.Spec.Kwargs["num_heads"] is JsonValue pv && pv.TryGetValue<int>(out int p)) return p;
        return null;
    }

    private static Dictionary<string, Tensor> FromTimm(IReadOnlyDictionary<string, Tensor> raw, string source)
    {
        int layers = ArchitectureInference.CountIndexed(raw, "blocks.", ".norm1.weight");
        var map = TimmKeys.VitToTorchvision(layers, raw.ContainsKey("pre_logits.fc.weight"));
        var unmapped = raw.Keys.Where(k => !map.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (unmapped.Count > 0)
            throw new ImportException($"{source}: timm keys with no counterpart in torchvision's ViT (a variant VitSharp does not build): {string.Join(", ", unmapped)}");
        return raw.ToDictionary(kv => map[kv.Key], kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>The inferred arguments over the preset's (which must be of the same constructor).</summary>
    private static ModelSpec Merge(Preset? preset, string constructor, JsonObject inferred, string source)
    {
        if (preset is null) return new ModelSpec(constructor, inferred);
        if (!constructor.EndsWith(preset.Spec.Constructor, StringComparison.Ordinal) && !preset.Spec.Constructor.EndsWith(constructor, StringComparison.Ordinal))
            throw new ImportException($"{source}: the weights are a {constructor}, but --model {preset.Name} is a {preset.Spec.Constructor}");
        var kwargs = (JsonObject)preset.Spec.Kwargs.DeepClone();
        foreach (var (k, v) in inferred) kwargs[k] = v?.DeepClone();
        return new ModelSpec(constructor, kwargs);
    }

    private static ModelSpec ApplySet(ModelSpec spec, ImportOptions options, string source)
    {
        if (options.ModelArgs is not { Count: > 0 } set) return spec;
        var kwargs = (JsonObject)spec.Kwargs.DeepClone();
        foreach (var (key, text) in set)
        {
            JsonNode? value;
            try { value = JsonNode.Parse(text); }
            catch (System.Text.Json.JsonException) { value = JsonValue.Create(text); }
            kwargs[key] = value;
        }
        return spec with { Kwargs = kwargs };
    }

    /// <summary>Builds the spec's model and loads <paramref name="sd"/> strictly; errors name the file and every key that does not fit.</summary>
    public static Module BuildAndLoad(ModelSpec spec, IReadOnlyDictionary<string, Tensor> sd, string source) => BuildAndLoad(spec, sd, source, null);

    /// <summary>
    /// Builds <paramref name="spec"/> no larger than the weights allow (<see cref="ModelSpec.BuildFor"/>), refuses weights
    /// holding NaN or ±∞ (unless <see cref="ImportOptions.AllowNonFinite"/>) and loads them strictly, in eval mode.
    /// </summary>
    public static Module BuildAndLoad(ModelSpec spec, IReadOnlyDictionary<string, Tensor> sd, string source, ImportOptions? options)
    {
        var load = (options ?? new ImportOptions()).LoadOptions;
        foreach (var (name, t) in sd)
        {
            try { Checkpoint.CheckFinite(source, name, t.Data, load); }
            catch (CheckpointException e) { throw new ImportException(e.Message, e); }
        }
        Module model;
        try { model = spec.BuildFor(sd.Values.Sum(t => (long)t.Size), "model spec"); }
        catch (ModelConfigException e) { throw new ImportException($"{source}: {e.Message}", e); }
        try { model.LoadStateDict(sd, strict: true); }
        catch (StateDictException e) { throw new ImportException($"{source}: the weights do not fit {spec.Constructor}: {e.Message}", e); }
        model.Eval();
        return model;
    }

    private static (int C, int H, int W) InputOf(Module model) => model switch
    {
        SwinTransformer { Config.IsV2: true } s => (s.InputChannels, 256, 256),   // torchvision's swin_v2 weights: 256²
        IImageModel im => (im.InputChannels, im.InputHeight ?? 224, im.InputWidth ?? 224),
        _ => (3, 224, 224),
    };

    /// <summary>How the family's releases prepare images: torchvision's (bilinear resize to size/0.875, centre crop,
    /// ImageNet mean/std), timm/DeiT's (the same with bicubic). The resize scales with the model's input size.</summary>
    private static ImagePreprocessing DefaultPreprocessing(WeightArchitecture arch, Module model, List<string> notes)
    {
        var (c, h, w) = InputOf(model);
        int size = Math.Min(h, w);
        var prep = arch is WeightArchitecture.TimmViT or WeightArchitecture.DeiTDistilled
            ? ImagePreprocessing.TimmEval(size)
            : arch == WeightArchitecture.Swin
            // torchvision's swin_t / swin_v2_t weights: bicubic resize to 232 / 260, centre crop 224 / 256.
            ? ImagePreprocessing.ImageNetEval(size, size == 256 ? 260 : (int)Math.Round(size * 232 / 224.0)) with { Interpolation = ResizeInterpolation.Bicubic }
            : ImagePreprocessing.ImageNetEval(size, (int)Math.Floor(size / 0.875));
        if (arch == WeightArchitecture.Swin)
            notes.Add($"preprocessing: torchvision's swin_t/swin_v2_t evaluation (bicubic resize to {prep.ResizeShorter}, crop {size}, ImageNet mean/std); " +
                "torchvision resizes swin_s to 246, swin_b to 238 and swin_v2_b to 272");
        if (arch == WeightArchitecture.TimmViT)
            notes.Add("preprocessing: timm's ImageNet evaluation (bicubic, crop 0.875, ImageNet mean/std); some timm ViTs (augreg) use mean/std 0.5");
        if (c != 3) prep = prep with { Channels = c, Mean = Repeat(prep.Mean![0], c), Std = Repeat(prep.Std![0], c) };
        return prep;
    }

    private static float[] Repeat(float v, int n) => Enumerable.Repeat(v, n).ToArray();

    private static IReadOnlyList<string> ClassList(IReadOnlyList<string> names, int classes, string source, string spec)
    {
        if (names.Count != classes) throw new ImportException($"{source}: --classes {spec} gives {names.Count} names but the model has {classes} classes");
        return names;
    }

    private static int ClassCount(Module model) => model switch
    {
        VisionTransformer v => v.Config.NumClasses,
        ResNet r => r.Config.NumClasses,
        SwinTransformer s => s.Config.NumClasses,
        _ => ProbeClasses(model),
    };

    private static int ProbeClasses(Module model)
    {
        var (c, h, w) = InputOf(model);
        using var noGrad = Autograd.NoGrad();
        model.Eval();
        return model.Forward(new Tensor(1, c, h, w)).Dim(1);
    }

    private static DataInfo MakeData(string source, Module model, ImagePreprocessing prep, ImportOptions options, IReadOnlyList<string>? own, List<string> notes)
    {
        var (c, h, w) = InputOf(model);
        int classes = ClassCount(model);
        IReadOnlyList<string> names;
        if (options.Classes is { } cls) names = ClassList(ClassNames.Resolve(cls), classes, source, cls);
        else if (own is not null && own.Count == classes) names = own;
        else if (classes == ImageNetClasses.Names.Count)
        {
            names = ImageNetClasses.Names;
            notes.Add("class names: ImageNet's 1,000 (the model has 1,000 classes); give --classes FILE if they are others");
        }
        else
        {
            names = Enumerable.Range(0, classes).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            if (classes > 0) notes.Add($"class names: none in the weights, so the indices 0–{classes - 1}; give --classes FILE to name them");
        }
        float[] mean = prep.Mean?.ToArray() ?? Repeat(0f, c), std = prep.Std?.ToArray() ?? Repeat(1f, c);
        return new DataInfo("folder", names, c, h, w, mean, std) { Preprocessing = prep };
    }

    private static ImportedModel ImportHuggingFace(string folder, ImportOptions options, List<string> notes)
    {
        var hf = HuggingFaceVit.Load(folder);
        var spec = ApplySet(ModelSpec.VisionTransformer(hf.Config), options, folder);
        var model = BuildAndLoad(spec, hf.StateDict, folder, options);
        ImagePreprocessing prep;
        if (hf.Preprocessing is { } p)
        {
            try
            {
                prep = ImagePreprocessing.FromHuggingFace(p.DoResize, p.Height, p.Width, p.ShortestEdge, p.Resample, p.DoRescale, p.RescaleFactor,
                    p.DoNormalize, p.ImageMean, p.ImageStd, p.DoCenterCrop, p.CropHeight, p.CropWidth, hf.Config.InChans);
            }
            catch (ArgumentException e) { throw new ImportException($"{Path.Combine(folder, "preprocessor_config.json")}: {e.Message}", e); }
        }
        else
        {
            // transformers' ViTImageProcessor defaults: resize to the model's size (bilinear), rescale, mean/std 0.5.
            prep = ImagePreprocessing.FromHuggingFace(true, hf.Config.ImageSize, hf.Config.ImageSize, null, 2, true, ImagePreprocessing.Rescale255,
                true, Repeat(0.5f, hf.Config.InChans), Repeat(0.5f, hf.Config.InChans), channels: hf.Config.InChans);
            notes.Add("preprocessing: no preprocessor_config.json, so ViTImageProcessor's defaults (resize to the input size, mean/std 0.5)");
        }
        foreach (var k in hf.IgnoredKeys) notes.Add($"ignored {k} (not used by ViTForImageClassification)");
        return new ImportedModel(folder, WeightFormat.HuggingFace, WeightArchitecture.TorchvisionViT, model, spec,
            MakeData(folder, model, prep, options, hf.ClassNames, notes), notes);
    }

    private static ImportedModel ImportGoogle(string path, ImportOptions options, List<string> notes)
    {
        var (config, sd) = GoogleVit.Load(path);
        var spec = ApplySet(ModelSpec.VisionTransformer(config), options, path);
        var model = BuildAndLoad(spec, sd, path, options);
        // The ViT paper's evaluation: the image resized to the model's input, pixels scaled to [-1, 1].
        var prep = ImagePreprocessing.FromHuggingFace(true, config.ImageSize, config.ImageSize, null, 2, true, ImagePreprocessing.Rescale255,
            true, Repeat(0.5f, config.InChans), Repeat(0.5f, config.InChans), channels: config.InChans) with { CropRounding = CropRounding.TorchVision };
        notes.Add("preprocessing: resize to the input size, mean/std 0.5 (the ViT paper's releases)");
        return new ImportedModel(path, WeightFormat.Npz, WeightArchitecture.TorchvisionViT, model, spec, MakeData(path, model, prep, options, null, notes), notes);
    }
}
