using System.Globalization;
using System.Text.Json.Nodes;

namespace VitSharp.Data;

/// <summary>How <see cref="ImagePreprocessing"/> resizes an image before cropping.</summary>
public enum ResizeMode
{
    /// <summary>No resizing.</summary>
    None,

    /// <summary>
    /// The shorter side becomes <see cref="ImagePreprocessing.ResizeShorter"/>, keeping the aspect ratio, as
    /// torchvision's <c>Resize(int)</c> (and Hugging Face's <c>size={"shortest_edge": S}</c>): the longer side is
    /// <c>int(S · long / short)</c>, truncated.
    /// </summary>
    ShorterSide,

    /// <summary>To exactly <see cref="ImagePreprocessing.ResizeHeight"/>×<see cref="ImagePreprocessing.ResizeWidth"/> (torchvision's <c>Resize((h, w))</c>, Hugging Face's <c>size={"height", "width"}</c>).</summary>
    Exact,
}

/// <summary>The interpolation of a resize.</summary>
public enum ResizeInterpolation
{
    /// <summary>Nearest neighbour.</summary>
    Nearest,

    /// <summary>Bilinear (a triangle filter).</summary>
    Bilinear,

    /// <summary>Bicubic (Pillow's a = −0.5 when antialiased).</summary>
    Bicubic,
}

/// <summary>Where a centre crop starts when the image and the crop differ by an odd number of pixels.</summary>
public enum CropRounding
{
    /// <summary>
    /// torchvision's <c>CenterCrop</c>: the crop starts at <c>int(round((h − ch) / 2))</c> (round half to even);
    /// a crop larger than the image pads it with zeros, <c>(ch − h) // 2</c> before.
    /// </summary>
    TorchVision,

    /// <summary>Hugging Face's <c>center_crop</c>: the crop starts at <c>(h − ch) // 2</c> (floor); a crop larger than the image pads it with zeros, <c>ceil((ch − h) / 2)</c> before.</summary>
    HuggingFace,
}

/// <summary>
/// The preprocessing that pretrained weights expect, as one record that can travel with them (JSON in a
/// checkpoint): channel conversion, resize, centre crop, rescale and per-channel normalisation, applied in that
/// order by <see cref="Apply"/> to give C×H×W floats.
/// </summary>
/// <remarks>
/// <para>With <see cref="Antialias"/> (the default) the resize is Pillow's <c>Image.resize</c> exactly
/// (<see cref="PilResample"/>): what torchvision's transforms do to PIL images and what Hugging Face image
/// processors do. Without it, the resize is <c>torch.nn.functional.interpolate</c> on a uint8 tensor
/// (nearest, or bilinear with <c>align_corners=False</c>; see <see cref="ImageOps.Resize"/>), which aliases when
/// downscaling; bicubic has no such variant here.</para>
/// <para>The crop and the zero padding act on the 8-bit image, before rescaling. Rescaling by exactly 1/255 is
/// torchvision's <c>ToTensor</c> (a float32 division by 255); another factor multiplies in double precision and
/// rounds to float32 (Hugging Face's <c>rescale</c>). Normalisation is <c>(x − mean) / std</c> in float32.</para>
/// </remarks>
public sealed record ImagePreprocessing
{
    /// <summary>ImageNet's per-channel mean (RGB), as torchvision and timm use it.</summary>
    public static IReadOnlyList<float> ImageNetMean { get; } = [0.485f, 0.456f, 0.406f];

    /// <summary>ImageNet's per-channel standard deviation (RGB).</summary>
    public static IReadOnlyList<float> ImageNetStd { get; } = [0.229f, 0.224f, 0.225f];

    /// <summary>Exactly 1/255, torchvision's <c>ToTensor</c> scale (Hugging Face writes it 0.00392156862745098, the same double).</summary>
    public const double Rescale255 = 1.0 / 255.0;

    /// <summary>Channels of the output: 1 (grey) or 3 (RGB). The decoded image is converted as PIL's <c>convert</c> does.</summary>
    public int Channels { get; init; } = 3;

    /// <summary>The resize rule.</summary>
    public ResizeMode Resize { get; init; } = ResizeMode.None;

    /// <summary>The shorter side after resizing, for <see cref="ResizeMode.ShorterSide"/> (else 0).</summary>
    public int ResizeShorter { get; init; }

    /// <summary>The height after resizing, for <see cref="ResizeMode.Exact"/> (else 0).</summary>
    public int ResizeHeight { get; init; }

    /// <summary>The width after resizing, for <see cref="ResizeMode.Exact"/> (else 0).</summary>
    public int ResizeWidth { get; init; }

    /// <summary>The resize interpolation.</summary>
    public ResizeInterpolation Interpolation { get; init; } = ResizeInterpolation.Bilinear;

    /// <summary>Whether the resize is Pillow's (antialiased when downscaling) rather than torch's tensor interpolation.</summary>
    public bool Antialias { get; init; } = true;

    /// <summary>Height of the centre crop, or 0 for no crop (with <see cref="CropWidth"/>).</summary>
    public int CropHeight { get; init; }

    /// <summary>Width of the centre crop, or 0 for no crop (with <see cref="CropHeight"/>).</summary>
    public int CropWidth { get; init; }

    /// <summary>Where an odd-sized centre crop starts.</summary>
    public CropRounding CropRounding { get; init; } = CropRounding.TorchVision;

    /// <summary>The factor applied to the 0…255 pixel values, or null to keep them as they are.</summary>
    public double? RescaleFactor { get; init; } = Rescale255;

    /// <summary>Per-channel means subtracted after rescaling (one per channel, or one for all), or null for no normalisation (with <see cref="Std"/>).</summary>
    public IReadOnlyList<float>? Mean { get; init; }

    /// <summary>Per-channel standard deviations (positive), or null for no normalisation (with <see cref="Mean"/>).</summary>
    public IReadOnlyList<float>? Std { get; init; }

    /// <summary>Whether a centre crop is configured.</summary>
    public bool HasCrop => CropHeight > 0 && CropWidth > 0;

    /// <summary>
    /// torchvision's classic ImageNet evaluation transform: <c>Resize(resize)</c> bilinear on the PIL image
    /// (antialiased), <c>CenterCrop(size)</c>, <c>ToTensor()</c>, <c>Normalize(ImageNet mean, std)</c> — the
    /// <c>transforms</c> of torchvision's ImageNet weights (<c>ImageClassification(crop_size=224, resize_size=256)</c>).
    /// </summary>
    public static ImagePreprocessing ImageNetEval(int size = 224, int resize = 256) => new ImagePreprocessing
    {
        Channels = 3,
        Resize = ResizeMode.ShorterSide,
        ResizeShorter = resize,
        Interpolation = ResizeInterpolation.Bilinear,
        Antialias = true,
        CropHeight = size,
        CropWidth = size,
        CropRounding = CropRounding.TorchVision,
        RescaleFactor = Rescale255,
        Mean = ImageNetMean.ToArray(),
        Std = ImageNetStd.ToArray(),
    }.Validated();

    /// <summary>
    /// timm's evaluation transform (DeiT's and most timm ViTs'): <c>Resize(floor(size / cropPct))</c> bicubic on the
    /// PIL image, <c>CenterCrop(size)</c>, <c>ToTensor()</c>, <c>Normalize(ImageNet mean, std)</c>. The default
    /// crop_pct 0.875 gives Resize(256) for 224. (Models trained with mean = std = 0.5, as Google's ViTs, need
    /// <c>with { Mean = …, Std = … }</c>.)
    /// </summary>
    public static ImagePreprocessing TimmEval(int size = 224, double cropPct = 0.875)
    {
        if (!(cropPct > 0 && cropPct <= 1)) throw new ArgumentOutOfRangeException(nameof(cropPct), cropPct, "crop_pct must be in (0, 1]");
        return ImageNetEval(size, (int)Math.Floor(size / cropPct)) with { Interpolation = ResizeInterpolation.Bicubic };
    }

    /// <summary>
    /// The preprocessing of a Hugging Face image processor (<c>preprocessor_config.json</c>, e.g.
    /// <c>ViTImageProcessor</c>, <c>DeiTImageProcessor</c>), from its plain values: resize (to
    /// <c>size.height</c>×<c>size.width</c>, or the shorter side to <c>size.shortest_edge</c>) with PIL filter
    /// <paramref name="resample"/> (0 nearest, 2 bilinear, 3 bicubic), optional centre crop to
    /// <c>crop_size</c> (Hugging Face's floor rounding), rescale, normalise.
    /// </summary>
    /// <param name="doResize">do_resize.</param>
    /// <param name="sizeHeight">size["height"], or null.</param>
    /// <param name="sizeWidth">size["width"], or null.</param>
    /// <param name="shortestEdge">size["shortest_edge"], or null (exclusive with height/width).</param>
    /// <param name="resample">PIL filter code.</param>
    /// <param name="doRescale">do_rescale.</param>
    /// <param name="rescaleFactor">rescale_factor.</param>
    /// <param name="doNormalize">do_normalize.</param>
    /// <param name="imageMean">image_mean (required when normalising).</param>
    /// <param name="imageStd">image_std (required when normalising).</param>
    /// <param name="doCenterCrop">do_center_crop.</param>
    /// <param name="cropHeight">crop_size["height"] (required when cropping).</param>
    /// <param name="cropWidth">crop_size["width"] (required when cropping).</param>
    /// <param name="channels">Output channels (Hugging Face processors convert to RGB: 3).</param>
    /// <exception cref="ArgumentException">A value is missing, contradictory or unsupported (the message names it).</exception>
    public static ImagePreprocessing FromHuggingFace(
        bool doResize = true, int? sizeHeight = null, int? sizeWidth = null, int? shortestEdge = null, int resample = 2,
        bool doRescale = true, double rescaleFactor = Rescale255,
        bool doNormalize = true, IReadOnlyList<float>? imageMean = null, IReadOnlyList<float>? imageStd = null,
        bool doCenterCrop = false, int? cropHeight = null, int? cropWidth = null, int channels = 3)
    {
        var p = new ImagePreprocessing { Channels = channels, CropRounding = CropRounding.HuggingFace, Antialias = true };
        if (doResize)
        {
            if (shortestEdge is int s)
            {
                if (sizeHeight is not null || sizeWidth is not null)
                    throw new ArgumentException("size: give either shortest_edge or height and width, not both");
                p = p with { Resize = ResizeMode.ShorterSide, ResizeShorter = s };
            }
            else if (sizeHeight is int h && sizeWidth is int w)
                p = p with { Resize = ResizeMode.Exact, ResizeHeight = h, ResizeWidth = w };
            else
                throw new ArgumentException("size: do_resize needs size.shortest_edge or both size.height and size.width");
            p = p with
            {
                Interpolation = resample switch
                {
                    0 => ResizeInterpolation.Nearest,
                    2 => ResizeInterpolation.Bilinear,
                    3 => ResizeInterpolation.Bicubic,
                    _ => throw new ArgumentException($"resample: PIL filter {resample} ({(Enum.IsDefined((PilFilter)resample) ? ((PilFilter)resample).ToString() : "unknown")}) is not supported; use 0 (nearest), 2 (bilinear) or 3 (bicubic)"),
                },
            };
        }
        if (doCenterCrop)
        {
            if (cropHeight is not int ch || cropWidth is not int cw)
                throw new ArgumentException("crop_size: do_center_crop needs crop_size.height and crop_size.width");
            p = p with { CropHeight = ch, CropWidth = cw };
        }
        p = p with { RescaleFactor = doRescale ? rescaleFactor : null };
        if (doNormalize)
        {
            if (imageMean is null || imageStd is null) throw new ArgumentException("image_mean/image_std: do_normalize needs both");
            p = p with { Mean = imageMean.ToArray(), Std = imageStd.ToArray() };
        }
        return p.Validated();
    }

    /// <summary>
    /// <see cref="FromHuggingFace(bool, int?, int?, int?, int, bool, double, bool, IReadOnlyList{float}?, IReadOnlyList{float}?, bool, int?, int?, int)"/>
    /// from a parsed <c>preprocessor_config.json</c>. Absent fields take the image processors' usual defaults
    /// (do_resize, do_rescale, do_normalize true; resample 2; rescale_factor 1/255; do_center_crop false).
    /// </summary>
    /// <exception cref="FormatException">A field has the wrong type (the message names it).</exception>
    /// <exception cref="ArgumentException">The values are missing, contradictory or unsupported.</exception>
    public static ImagePreprocessing FromHuggingFace(JsonObject config)
    {
        ArgumentNullException.ThrowIfNull(config);
        JsonObject? size = OptionalObject(config, "size"), crop = OptionalObject(config, "crop_size");
        return FromHuggingFace(
            doResize: OptionalBool(config, "do_resize") ?? true,
            sizeHeight: size is null ? null : OptionalInt(size, "height", "size.height"),
            sizeWidth: size is null ? null : OptionalInt(size, "width", "size.width"),
            shortestEdge: size is null ? null : OptionalInt(size, "shortest_edge", "size.shortest_edge"),
            resample: OptionalInt(config, "resample", "resample") ?? 2,
            doRescale: OptionalBool(config, "do_rescale") ?? true,
            rescaleFactor: OptionalNumber(config, "rescale_factor") ?? Rescale255,
            doNormalize: OptionalBool(config, "do_normalize") ?? true,
            imageMean: config["image_mean"] is null ? null : FloatsOrNull(config, "image_mean"),
            imageStd: config["image_std"] is null ? null : FloatsOrNull(config, "image_std"),
            doCenterCrop: OptionalBool(config, "do_center_crop") ?? false,
            cropHeight: crop is null ? null : OptionalInt(crop, "height", "crop_size.height"),
            cropWidth: crop is null ? null : OptionalInt(crop, "width", "crop_size.width"));
    }

    private static JsonObject? OptionalObject(JsonObject j, string name) => j[name] switch
    {
        null => null,
        JsonObject o => o,
        var other => throw WrongType(name, "an object", other),
    };

    private static bool? OptionalBool(JsonObject j, string name) => j[name] is null ? null : Bool(j, name);

    private static double? OptionalNumber(JsonObject j, string name) => j[name] is null ? null : NullableDouble(j, name);

    private static int? OptionalInt(JsonObject j, string name, string path)
    {
        if (j[name] is null) return null;
        try
        {
            return Int(j, name);
        }
        catch (FormatException) when (path != name)
        {
            throw WrongType(path, "an integer", j[name]);
        }
    }

    /// <summary>The output size (height, width) for an input of <paramref name="height"/>×<paramref name="width"/>.</summary>
    public (int Height, int Width) OutputSize(int height, int width)
    {
        if (HasCrop) return (CropHeight, CropWidth);
        return ResizedSize(height, width);
    }

    /// <summary>The size after the resize step (before cropping) for an input of <paramref name="height"/>×<paramref name="width"/>.</summary>
    public (int Height, int Width) ResizedSize(int height, int width)
    {
        switch (Resize)
        {
            case ResizeMode.None:
                return (height, width);
            case ResizeMode.Exact:
                return (ResizeHeight, ResizeWidth);
            default:
            {
                // torchvision 0.14 _compute_resized_output_size: new_long = int(size * long / short), Python float division.
                bool wide = width > height;
                long shortSide = wide ? height : width, longSide = wide ? width : height;
                int newLong = (int)((double)(ResizeShorter * longSide) / shortSide);
                return wide ? (ResizeShorter, newLong) : (newLong, ResizeShorter);
            }
        }
    }

    /// <summary>
    /// The geometry of <see cref="Apply"/> alone, on bytes: channel conversion, resize and centre crop (zero padding
    /// where the crop is larger than the image) — H×W×<see cref="Channels"/> bytes of <see cref="OutputSize"/>, before
    /// rescaling and normalisation. Image-folder data sets use it to prepare images as an imported model expects.
    /// </summary>
    /// <exception cref="ArgumentException">The record is inconsistent (see <see cref="Validate"/>).</exception>
    public DecodedImage ResizeAndCrop(DecodedImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        Validate();
        var img = ImageDecoder.ConvertChannels(image, Channels);
        var (rh, rw) = ResizedSize(img.Height, img.Width);
        if (rh <= 0 || rw <= 0) throw new ArgumentException($"resizing {img.Width}×{img.Height} gives an empty {rw}×{rh} image");
        img = ResizeImage(img, rw, rh);
        if (!HasCrop) return img;
        int c = Channels, h = img.Height, w = img.Width, oh = CropHeight, ow = CropWidth;
        int top = CropOffset(h, CropHeight, CropRounding), left = CropOffset(w, CropWidth, CropRounding);
        var cropped = new byte[(long)oh * ow * c];
        byte[] px = img.Pixels;
        for (int y = 0; y < oh; y++)
        {
            int sy = y + top;
            if (sy < 0 || sy >= h) continue;                       // zero padding rows
            for (int x = 0; x < ow; x++)
            {
                int sx = x + left;
                if (sx < 0 || sx >= w) continue;                   // zero padding columns
                Array.Copy(px, ((long)sy * w + sx) * c, cropped, ((long)y * ow + x) * c, c);
            }
        }
        return new DecodedImage(cropped, ow, oh, c);
    }

    /// <summary>
    /// Preprocesses a decoded image: channel conversion, resize, centre crop (<see cref="ResizeAndCrop"/>), rescale,
    /// normalise. Returns <see cref="Channels"/>×H×W floats, H×W as <see cref="OutputSize"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The record is inconsistent (see <see cref="Validate"/>).</exception>
    public float[] Apply(DecodedImage image)
    {
        var img = ResizeAndCrop(image);
        int c = Channels, oh = img.Height, ow = img.Width;
        float[] lut = ValueTable();
        var mean = new float[c];
        var std = new float[c];
        bool normalize = Mean is not null;
        for (int k = 0; k < c; k++)
        {
            mean[k] = normalize ? Mean![Mean.Count == 1 ? 0 : k] : 0f;
            std[k] = normalize ? Std![Std.Count == 1 ? 0 : k] : 1f;
        }
        var result = new float[(long)c * oh * ow];
        int plane = oh * ow;
        byte[] px = img.Pixels;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int k = 0; k < c; k++)
                {
                    float v = lut[px[((long)y * ow + x) * c + k]];
                    // (x − mean) / std in float32, as torch's sub_(mean).div_(std).
                    if (normalize) v = (v - mean[k]) / std[k];
                    result[k * plane + y * ow + x] = v;
                }
        return result;
    }

    /// <summary>Decodes an image file (PNG or JPEG) and preprocesses it with <see cref="Apply"/>.</summary>
    /// <exception cref="DataSetException">The file cannot be decoded.</exception>
    public float[] Load(string path) => Apply(ImageDecoder.Decode(path, Channels));

    /// <summary>The first source row (or column) of a centre crop of <paramref name="crop"/> out of <paramref name="size"/>; negative when the crop is larger (zero padding before).</summary>
    public static int CropOffset(int size, int crop, CropRounding rounding) => rounding switch
    {
        // torchvision: pad (crop − size) // 2 before when larger, else int(round((size − crop) / 2.0)), half to even.
        CropRounding.TorchVision => crop > size ? -((crop - size) / 2) : (int)Math.Round((size - crop) / 2.0, MidpointRounding.ToEven),
        // Hugging Face: (size − crop) // 2, Python floor division (the padding ceil((crop − size) / 2) gives the same).
        _ => (int)Math.Floor((size - crop) / 2.0),
    };

    private DecodedImage ResizeImage(DecodedImage img, int width, int height)
    {
        if (width == img.Width && height == img.Height) return img;
        if (Antialias)
        {
            var filter = Interpolation switch
            {
                ResizeInterpolation.Nearest => PilFilter.Nearest,
                ResizeInterpolation.Bicubic => PilFilter.Bicubic,
                _ => PilFilter.Bilinear,
            };
            return PilResample.Resize(img, width, height, filter);
        }
        return Interpolation switch
        {
            ResizeInterpolation.Bilinear => ImageOps.Resize(img, width, height),
            ResizeInterpolation.Nearest => TorchNearest(img, width, height),
            _ => throw new NotSupportedException("bicubic without antialiasing (torch's tensor bicubic) is not supported"),
        };
    }

    // torch.nn.functional.interpolate(mode="nearest"): source index min(floor(dst · (float)in/out), in − 1).
    private static DecodedImage TorchNearest(DecodedImage img, int width, int height)
    {
        int c = img.Channels;
        var xs = NearestIndices(img.Width, width);
        var ys = NearestIndices(img.Height, height);
        var dst = new byte[(long)width * height * c];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                img.Pixels.AsSpan((int)(((long)ys[y] * img.Width + xs[x]) * c), c).CopyTo(dst.AsSpan((int)(((long)y * width + x) * c), c));
        return new DecodedImage(dst, width, height, c);
    }

    private static int[] NearestIndices(int inSize, int outSize)
    {
        float scale = (float)inSize / outSize;
        var idx = new int[outSize];
        for (int d = 0; d < outSize; d++) idx[d] = Math.Min((int)MathF.Floor(d * scale), inSize - 1);
        return idx;
    }

    private float[] ValueTable()
    {
        var lut = new float[256];
        for (int b = 0; b < 256; b++)
            lut[b] = RescaleFactor is not double f ? b
                : f == Rescale255 ? b / 255f
                : (float)(b * f);
        return lut;
    }

    /// <summary>Checks the record is consistent; throws <see cref="ArgumentException"/> naming the offending property.</summary>
    public void Validate()
    {
        if (Channels is not (1 or 3)) throw new ArgumentException($"Channels must be 1 or 3, not {Channels}");
        if (!Enum.IsDefined(Resize)) throw new ArgumentException($"Resize: unknown mode {Resize}");
        if (!Enum.IsDefined(Interpolation)) throw new ArgumentException($"Interpolation: unknown value {Interpolation}");
        if (!Enum.IsDefined(CropRounding)) throw new ArgumentException($"CropRounding: unknown value {CropRounding}");
        if (Resize == ResizeMode.ShorterSide && ResizeShorter <= 0) throw new ArgumentException($"ResizeShorter must be positive for {Resize}, not {ResizeShorter}");
        if (Resize == ResizeMode.Exact && (ResizeHeight <= 0 || ResizeWidth <= 0))
            throw new ArgumentException($"ResizeHeight and ResizeWidth must be positive for {Resize}, not {ResizeHeight}×{ResizeWidth}");
        if (Resize != ResizeMode.None && !Antialias && Interpolation == ResizeInterpolation.Bicubic)
            throw new ArgumentException("Interpolation: bicubic needs Antialias (Pillow's resize); torch's tensor bicubic is not supported");
        if (CropHeight < 0 || CropWidth < 0 || (CropHeight == 0) != (CropWidth == 0))
            throw new ArgumentException($"CropHeight and CropWidth must both be positive or both 0 (no crop), not {CropHeight}×{CropWidth}");
        if (RescaleFactor is double r && !(double.IsFinite(r) && r > 0)) throw new ArgumentException($"RescaleFactor must be positive and finite, not {r}");
        if ((Mean is null) != (Std is null)) throw new ArgumentException("Mean and Std must both be given or both be null");
        if (Mean is not null)
        {
            if (Mean.Count is 0 || (Mean.Count != 1 && Mean.Count != Channels))
                throw new ArgumentException($"Mean has {Mean.Count} values; {Channels} channels need {Channels} (or 1)");
            if (Std!.Count != Mean.Count) throw new ArgumentException($"Std has {Std.Count} values, Mean {Mean.Count}");
            if (Mean.Any(m => !float.IsFinite(m))) throw new ArgumentException("Mean values must be finite");
            if (Std.Any(s => !(s > 0) || !float.IsFinite(s))) throw new ArgumentException("Std values must be positive and finite");
        }
    }

    private ImagePreprocessing Validated()
    {
        Validate();
        return this;
    }

    /// <inheritdoc/>
    public bool Equals(ImagePreprocessing? other) =>
        other is not null && Channels == other.Channels && Resize == other.Resize && ResizeShorter == other.ResizeShorter
        && ResizeHeight == other.ResizeHeight && ResizeWidth == other.ResizeWidth && Interpolation == other.Interpolation
        && Antialias == other.Antialias && CropHeight == other.CropHeight && CropWidth == other.CropWidth
        && CropRounding == other.CropRounding && RescaleFactor == other.RescaleFactor
        && SameValues(Mean, other.Mean) && SameValues(Std, other.Std);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Channels, Resize, ResizeShorter, ResizeHeight, ResizeWidth,
        HashCode.Combine(Interpolation, Antialias, CropHeight, CropWidth, CropRounding, RescaleFactor, Mean?.Count ?? -1));

    private static bool SameValues(IReadOnlyList<float>? a, IReadOnlyList<float>? b) =>
        a is null ? b is null : b is not null && a.SequenceEqual(b);

    // ---- JSON ----------------------------------------------------------------------------------------------

    /// <summary>
    /// As JSON, e.g. <c>{"channels": 3, "resize": "shorter_side", "resize_shorter": 256, "interpolation": "bilinear",
    /// "antialias": true, "crop_height": 224, "crop_width": 224, "crop_rounding": "torchvision",
    /// "rescale_factor": 0.00392156862745098, "mean": [...], "std": [...]}</c>. Every field is written
    /// ("resize_height"/"resize_width" only for exact resizes, "resize_shorter" only for shorter-side ones; no crop is 0×0;
    /// no rescale or normalisation is null).
    /// </summary>
    public JsonObject ToJson()
    {
        Validate();
        var j = new JsonObject
        {
            ["channels"] = Channels,
            ["resize"] = ResizeName(Resize),
        };
        if (Resize == ResizeMode.ShorterSide) j["resize_shorter"] = ResizeShorter;
        if (Resize == ResizeMode.Exact)
        {
            j["resize_height"] = ResizeHeight;
            j["resize_width"] = ResizeWidth;
        }
        j["interpolation"] = Interpolation.ToString().ToLowerInvariant();
        j["antialias"] = Antialias;
        j["crop_height"] = CropHeight;
        j["crop_width"] = CropWidth;
        j["crop_rounding"] = CropRounding == CropRounding.TorchVision ? "torchvision" : "huggingface";
        j["rescale_factor"] = RescaleFactor is double r ? JsonValue.Create(r) : null;
        j["mean"] = Mean is null ? null : new JsonArray(Mean.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
        j["std"] = Std is null ? null : new JsonArray(Std.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
        return j;
    }

    /// <summary>Reads <see cref="ToJson"/>'s format. Every field is type-checked.</summary>
    /// <exception cref="FormatException">A field is missing, of the wrong type or has an unknown value (the message names the field), or the record is inconsistent.</exception>
    public static ImagePreprocessing FromJson(JsonObject json)
    {
        ArgumentNullException.ThrowIfNull(json);
        string rs = String(json, "resize");
        var resize = rs switch
        {
            "none" => ResizeMode.None,
            "shorter_side" => ResizeMode.ShorterSide,
            "exact" => ResizeMode.Exact,
            _ => throw new FormatException($"preprocessing field \"resize\": unknown value \"{rs}\" (none, shorter_side, exact)"),
        };
        string interp = String(json, "interpolation");
        string rounding = String(json, "crop_rounding");
        var p = new ImagePreprocessing
        {
            Channels = Int(json, "channels"),
            Resize = resize,
            ResizeShorter = resize == ResizeMode.ShorterSide ? Int(json, "resize_shorter") : 0,
            ResizeHeight = resize == ResizeMode.Exact ? Int(json, "resize_height") : 0,
            ResizeWidth = resize == ResizeMode.Exact ? Int(json, "resize_width") : 0,
            Interpolation = interp switch
            {
                "nearest" => ResizeInterpolation.Nearest,
                "bilinear" => ResizeInterpolation.Bilinear,
                "bicubic" => ResizeInterpolation.Bicubic,
                _ => throw new FormatException($"preprocessing field \"interpolation\": unknown value \"{interp}\" (nearest, bilinear, bicubic)"),
            },
            Antialias = Bool(json, "antialias"),
            CropHeight = Int(json, "crop_height"),
            CropWidth = Int(json, "crop_width"),
            CropRounding = rounding switch
            {
                "torchvision" => CropRounding.TorchVision,
                "huggingface" => CropRounding.HuggingFace,
                _ => throw new FormatException($"preprocessing field \"crop_rounding\": unknown value \"{rounding}\" (torchvision, huggingface)"),
            },
            RescaleFactor = NullableDouble(json, "rescale_factor"),
            Mean = FloatsOrNull(json, "mean"),
            Std = FloatsOrNull(json, "std"),
        };
        try
        {
            p.Validate();
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"preprocessing: {e.Message}", e);
        }
        return p;
    }

    private static string ResizeName(ResizeMode m) => m switch
    {
        ResizeMode.ShorterSide => "shorter_side",
        ResizeMode.Exact => "exact",
        _ => "none",
    };

    private static JsonNode? Required(JsonObject j, string name, string expected) =>
        j.TryGetPropertyValue(name, out var node) ? node : throw new FormatException($"preprocessing field \"{name}\" is missing (expected {expected})");

    private static FormatException WrongType(string name, string expected, JsonNode? node = null) =>
        new($"preprocessing field \"{name}\" must be {expected}, not {Describe(node)}");

    private static string Describe(JsonNode? node) => node is null ? "null" : node.ToJsonString();

    private static int Int(JsonObject j, string name)
    {
        var node = Required(j, name, "an integer");
        if (node is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number)
        {
            if (v.TryGetValue(out int i)) return i;
            if (v.TryGetValue(out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
        }
        throw WrongType(name, "an integer", node);
    }

    private static bool Bool(JsonObject j, string name)
    {
        var node = Required(j, name, "true or false");
        return node is JsonValue v && v.TryGetValue(out bool b) ? b : throw WrongType(name, "true or false", node);
    }

    private static string String(JsonObject j, string name)
    {
        var node = Required(j, name, "a string");
        return node is JsonValue v && v.TryGetValue(out string? s) ? s : throw WrongType(name, "a string", node);
    }

    private static double? NullableDouble(JsonObject j, string name)
    {
        var node = Required(j, name, "a number or null");
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number && v.TryGetValue(out double d)) return d;
        throw WrongType(name, "a number or null", node);
    }

    private static float[]? FloatsOrNull(JsonObject j, string name)
    {
        var node = Required(j, name, "an array of numbers or null");
        if (node is null) return null;
        if (node is not JsonArray a) throw WrongType(name, "an array of numbers or null", node);
        var values = new float[a.Count];
        for (int i = 0; i < a.Count; i++)
            values[i] = a[i] is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number && v.TryGetValue(out float f)
                ? f : throw new FormatException($"preprocessing field \"{name}\"[{i}] must be a number, not {Describe(a[i])}");
        return values;
    }

    /// <summary>A one-line description, e.g. "resize shorter side 256 bilinear (antialiased), centre crop 224×224, ×1/255, normalise".</summary>
    public override string ToString()
    {
        var parts = new List<string> { Channels == 1 ? "grey" : "RGB" };
        string interp = Interpolation.ToString().ToLowerInvariant() + (Antialias ? " (PIL)" : " (tensor)");
        if (Resize == ResizeMode.ShorterSide) parts.Add($"resize shorter side {ResizeShorter} {interp}");
        if (Resize == ResizeMode.Exact) parts.Add($"resize {ResizeWidth}×{ResizeHeight} {interp}");
        if (HasCrop) parts.Add($"centre crop {CropWidth}×{CropHeight}");
        if (RescaleFactor is double r) parts.Add(r == Rescale255 ? "÷255" : "×" + r.ToString("R", CultureInfo.InvariantCulture));
        if (Mean is not null)
            parts.Add($"normalise mean [{string.Join(", ", Mean.Select(m => m.ToString(CultureInfo.InvariantCulture)))}] std [{string.Join(", ", Std!.Select(m => m.ToString(CultureInfo.InvariantCulture)))}]");
        return string.Join(", ", parts);
    }
}
