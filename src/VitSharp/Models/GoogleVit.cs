using VitSharp.IO;

namespace VitSharp.Models;

/// <summary>
/// Google's original JAX/Flax ViT checkpoints (<c>.npz</c>, as released by google-research/vision_transformer and read
/// by timm's <c>_load_weights</c>) converted to torchvision's layout (<see cref="VisionTransformer"/>). The whole
/// configuration is inferred from the array shapes (the attention kernels [C, H, D] carry the head count).
/// </summary>
/// <remarks>
/// <para>Layout (P = an optional prefix: <c>opt/target/</c> of training checkpoints, or big_vision's <c>params/</c> /
/// <c>params/img/</c>; keys outside P, such as optimizer state, are ignored; every key inside P must be used):</para>
/// <list type="table">
/// <listheader><term>Google (.npz)</term><description>torchvision</description></listheader>
/// <item><term><c>embedding/kernel</c> HWIO [p, p, in, C]</term><description><c>conv_proj.weight</c> [C, in, p, p] (axes 3, 2, 0, 1)</description></item>
/// <item><term><c>embedding/bias</c> [C]</term><description><c>conv_proj.bias</c></description></item>
/// <item><term><c>cls</c> [1, 1, C]</term><description><c>class_token</c></description></item>
/// <item><term><c>Transformer/posembed_input/pos_embedding</c> [1, N+1, C] (big_vision: <c>pos_embedding</c>)</term><description><c>encoder.pos_embedding</c></description></item>
/// <item><term><c>Transformer/encoderblock_i/LayerNorm_0/{scale,bias}</c></term><description><c>encoder.layers.encoder_layer_i.ln_1.{weight,bias}</c></description></item>
/// <item><term><c>…/MultiHeadDotProductAttention_1/{query,key,value}/kernel</c> [C, H, D]</term><description><c>….self_attention.in_proj_weight</c> [3C, C]: each reshaped [C, H·D], transposed, stacked q; k; v</description></item>
/// <item><term><c>…/MultiHeadDotProductAttention_1/{query,key,value}/bias</c> [H, D]</term><description><c>….self_attention.in_proj_bias</c> [3C]</description></item>
/// <item><term><c>…/MultiHeadDotProductAttention_1/out/kernel</c> [H, D, C], <c>out/bias</c></term><description><c>….self_attention.out_proj.weight</c> [C, H·D], <c>.bias</c></description></item>
/// <item><term><c>…/LayerNorm_2/{scale,bias}</c></term><description><c>….ln_2.{weight,bias}</c></description></item>
/// <item><term><c>…/MlpBlock_3/Dense_0</c>, <c>Dense_1</c> (kernel [in, out])</term><description><c>….mlp.0</c>, <c>….mlp.3</c> (weight [out, in])</description></item>
/// <item><term><c>Transformer/encoder_norm/{scale,bias}</c></term><description><c>encoder.ln.{weight,bias}</c></description></item>
/// <item><term><c>pre_logits/kernel</c> [C, R], <c>pre_logits/bias</c> (optional)</term><description><c>heads.pre_logits</c> (representation_size R)</description></item>
/// <item><term><c>head/kernel</c> [C or R, classes], <c>head/bias</c> (optional)</term><description><c>heads.head</c></description></item>
/// </list>
/// <para>big_vision checkpoints number the sub-modules MultiHeadDotProductAttention_0, LayerNorm_1 (ln_2), MlpBlock_0;
/// "scanned" checkpoints (<c>Transformer/encoderblock/…</c> with a leading layer axis) are split per layer. Flax's
/// LayerNorm epsilon is 1e-6, torchvision's too. Flax's <c>nn.gelu</c> defaults to the tanh approximation; timm and
/// torchvision run the released weights with the exact GELU, and so does <see cref="VisionTransformer"/>. Models without a class token (global average pooling, MAP head) are
/// refused: <see cref="VisionTransformer"/> classifies from the class token.</para>
/// </remarks>
public static class GoogleVit
{
    /// <summary>
    /// Reads an <c>.npz</c> checkpoint and converts it: the inferred configuration and a torchvision-layout state_dict
    /// that a <see cref="VisionTransformer"/> built from that configuration loads strictly. Throws
    /// <see cref="NpzException"/> for a bad archive and <see cref="ModelConfigException"/> (naming file, key and shapes)
    /// for arrays missing, left over or of inconsistent shapes.
    /// </summary>
    public static (VisionTransformerConfig Config, Dictionary<string, Tensor> StateDict) Load(string path) => Convert(Npz.Load(path), path);

    /// <summary>Reads, converts and loads a checkpoint into a new <see cref="VisionTransformer"/> (in eval mode).</summary>
    public static VisionTransformer LoadModel(string path)
    {
        var (config, sd) = Load(path);
        var model = new VisionTransformer(config);
        model.LoadStateDict(sd);
        model.Eval();
        return model;
    }

    /// <summary>
    /// Converts Google-layout arrays (keys as in the <c>.npz</c>, without <c>.npy</c>) to a configuration and a
    /// torchvision-layout state_dict; <paramref name="source"/> names the input in errors. See the type's remarks for the map.
    /// </summary>
    public static (VisionTransformerConfig Config, Dictionary<string, Tensor> StateDict) Convert(IReadOnlyDictionary<string, Tensor> arrays, string source = "npz")
    {
        var r = new Reader(arrays, source);
        return r.Run();
    }

    private sealed class Reader(IReadOnlyDictionary<string, Tensor> w, string source)
    {
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);
        private string _p = "";

        private ModelConfigException Fail(string problem) => new($"{source}: {problem}");

        private static string S(Tensor t) => Tensor.ShapeString(t.ShapeSpan);

        private Tensor Get(string key)
        {
            if (!w.TryGetValue(_p + key, out var t))
                throw Fail($"missing array '{_p + key}'");
            _used.Add(_p + key);
            return t;
        }

        private Tensor? TryGet(string key) => w.ContainsKey(_p + key) ? Get(key) : null;

        /// <summary>An array that must have <paramref name="shape"/>.</summary>
        private Tensor Get(string key, params int[] shape)
        {
            var t = Get(key);
            if (!t.ShapeSpan.SequenceEqual(shape))
                throw Fail($"array '{_p + key}' has shape {S(t)}, expected {Tensor.ShapeString(shape)} from the other arrays");
            return t;
        }

        public (VisionTransformerConfig, Dictionary<string, Tensor>) Run()
        {
            bool bigVision = false;
            if (w.ContainsKey("opt/target/embedding/kernel")) _p = "opt/target/";
            else if (w.ContainsKey("params/embedding/kernel")) { _p = "params/"; bigVision = true; }
            else if (w.ContainsKey("params/img/embedding/kernel")) { _p = "params/img/"; bigVision = true; }
            else if (!w.ContainsKey("embedding/kernel"))
            {
                if (w.Keys.Any(k => k.EndsWith("conv_root/kernel", StringComparison.Ordinal)))
                    throw Fail("a hybrid (ResNet + ViT) checkpoint ('conv_root/kernel'); only plain ViTs are supported");
                throw Fail($"no 'embedding/kernel' (nor 'opt/target/…', 'params/…'): not a Google ViT checkpoint (first keys: {string.Join(", ", w.Keys.Order(StringComparer.Ordinal).Take(5))})");
            }
            string posKey = bigVision ? "pos_embedding" : "Transformer/posembed_input/pos_embedding";
            int mha = bigVision ? 0 : 1, mlpIdx = bigVision ? 0 : 3, ln2 = bigVision ? 1 : 2;

            // ---- infer the configuration from the shapes
            var kernel = Get("embedding/kernel");
            if (kernel.Rank != 4 || kernel.Dim(0) != kernel.Dim(1))
                throw Fail($"array '{_p}embedding/kernel' has shape {S(kernel)}; expected HWIO [p, p, in, C] with a square patch");
            int patch = kernel.Dim(0), inChans = kernel.Dim(2), c = kernel.Dim(3);
            if (!w.ContainsKey(_p + "cls"))
                throw Fail($"no class token '{_p}cls' (a global-average-pool or MAP-head model); VisionTransformer classifies from the class token");
            var pos = Get(posKey);
            if (pos.Rank != 3 || pos.Dim(0) != 1 || pos.Dim(2) != c)
                throw Fail($"array '{_p}{posKey}' has shape {S(pos)}; expected [1, N+1, {c}]");
            int grid = (int)Math.Round(Math.Sqrt(pos.Dim(1) - 1));
            if (pos.Dim(1) < 2 || grid * grid != pos.Dim(1) - 1)
                throw Fail($"array '{_p}{posKey}' has shape {S(pos)}: {pos.Dim(1)} tokens are not a class token plus a square grid");

            bool scanned = w.ContainsKey(_p + "Transformer/encoderblock/LayerNorm_0/scale");
            int layers;
            if (scanned) layers = Get("Transformer/encoderblock/LayerNorm_0/scale").Dim(0);
            else
            {
                layers = 0;
                while (w.ContainsKey($"{_p}Transformer/encoderblock_{layers}/LayerNorm_0/scale")) layers++;
            }
            string Block(int i) => scanned ? "Transformer/encoderblock/" : $"Transformer/encoderblock_{i}/";
            int heads = 1, mlp = 1;
            if (layers > 0)
            {
                var q = Get($"{Block(0)}MultiHeadDotProductAttention_{mha}/query/kernel");
                int qr = scanned ? 1 : 0;
                if (q.Rank != 3 + qr || q.Dim(qr) != c || q.Dim(qr + 1) * q.Dim(qr + 2) != c)
                    throw Fail($"array '{_p}{Block(0)}MultiHeadDotProductAttention_{mha}/query/kernel' has shape {S(q)}; expected [{(scanned ? "L, " : "")}{c}, H, D] with H·D = {c}");
                heads = q.Dim(qr + 1);
                var d0 = Get($"{Block(0)}MlpBlock_{mlpIdx}/Dense_0/kernel");
                if (d0.Rank != 2 + qr) throw Fail($"array '{_p}{Block(0)}MlpBlock_{mlpIdx}/Dense_0/kernel' has shape {S(d0)}; expected [{(scanned ? "L, " : "")}{c}, M]");
                mlp = d0.Dim(qr + 1);
            }
            var pre = TryGet("pre_logits/kernel");
            if (pre is not null && (pre.Rank != 2 || pre.Dim(0) != c))
                throw Fail($"array '{_p}pre_logits/kernel' has shape {S(pre)}; expected [{c}, R]");
            int? rep = pre?.Dim(1);
            var headK = TryGet("head/kernel");
            if (headK is not null && (headK.Rank != 2 || headK.Dim(0) != (rep ?? c)))
                throw Fail($"array '{_p}head/kernel' has shape {S(headK)}; expected [{rep ?? c}, classes]");
            var config = new VisionTransformerConfig
            {
                ImageSize = grid * patch, PatchSize = patch, NumLayers = layers, NumHeads = heads, HiddenDim = c, MlpDim = mlp,
                NumClasses = headK?.Dim(1) ?? 0, RepresentationSize = rep, InChans = inChans, LayerNormEps = 1e-6f,
            };

            // ---- convert
            var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal)
            {
                ["conv_proj.weight"] = Permute(kernel, 3, 2, 0, 1),
                ["conv_proj.bias"] = Get("embedding/bias", c),
                ["class_token"] = Get("cls", 1, 1, c),
                ["encoder.pos_embedding"] = pos,
                ["encoder.ln.weight"] = Get("Transformer/encoder_norm/scale", c),
                ["encoder.ln.bias"] = Get("Transformer/encoder_norm/bias", c),
            };
            int hd = c / heads;
            for (int i = 0; i < layers; i++)
            {
                string b = Block(i), o = $"encoder.layers.encoder_layer_{i}.", m = $"{b}MultiHeadDotProductAttention_{mha}/";
                Tensor L(string key, params int[] shape) => scanned ? Layer(Get(key, [layers, .. shape]), i) : Get(key, shape);
                sd[o + "ln_1.weight"] = L(b + "LayerNorm_0/scale", c);
                sd[o + "ln_1.bias"] = L(b + "LayerNorm_0/bias", c);
                var qkvW = new float[3 * c * c];
                var qkvB = new float[3 * c];
                string[] qkv = ["query", "key", "value"];
                for (int j = 0; j < 3; j++)
                {
                    var k = L($"{m}{qkv[j]}/kernel", c, heads, hd);                   // [C, H, D] = [C, H·D]
                    Permute(new Tensor(k.Data, c, c), 1, 0).Data.CopyTo(qkvW, j * c * c);      // → [H·D, C]
                    L($"{m}{qkv[j]}/bias", heads, hd).Data.CopyTo(qkvB, j * c);
                }
                sd[o + "self_attention.in_proj_weight"] = new Tensor(qkvW, 3 * c, c);
                sd[o + "self_attention.in_proj_bias"] = new Tensor(qkvB, 3 * c);
                sd[o + "self_attention.out_proj.weight"] = Permute(new Tensor(L(m + "out/kernel", heads, hd, c).Data, c, c), 1, 0);   // [H·D, C] → [C, H·D]
                sd[o + "self_attention.out_proj.bias"] = L(m + "out/bias", c);
                sd[o + "ln_2.weight"] = L($"{b}LayerNorm_{ln2}/scale", c);
                sd[o + "ln_2.bias"] = L($"{b}LayerNorm_{ln2}/bias", c);
                sd[o + "mlp.0.weight"] = Permute(L($"{b}MlpBlock_{mlpIdx}/Dense_0/kernel", c, mlp), 1, 0);
                sd[o + "mlp.0.bias"] = L($"{b}MlpBlock_{mlpIdx}/Dense_0/bias", mlp);
                sd[o + "mlp.3.weight"] = Permute(L($"{b}MlpBlock_{mlpIdx}/Dense_1/kernel", mlp, c), 1, 0);
                sd[o + "mlp.3.bias"] = L($"{b}MlpBlock_{mlpIdx}/Dense_1/bias", c);
            }
            if (pre is not null)
            {
                sd["heads.pre_logits.weight"] = Permute(pre, 1, 0);
                sd["heads.pre_logits.bias"] = Get("pre_logits/bias", rep!.Value);
            }
            if (headK is not null)
            {
                sd["heads.head.weight"] = Permute(headK, 1, 0);
                sd["heads.head.bias"] = Get("head/bias", headK.Dim(1));
            }
            else if (w.ContainsKey(_p + "head/bias"))
                throw Fail($"array '{_p}head/bias' without '{_p}head/kernel'");

            var unused = w.Keys.Where(k => k.StartsWith(_p, StringComparison.Ordinal) && !_used.Contains(k)).Order(StringComparer.Ordinal).ToList();
            if (unused.Count > 0)
            {
                string hint = unused.Any(k => k.Contains("encoderblock_", StringComparison.Ordinal) && k.Contains("LayerNorm_0", StringComparison.Ordinal))
                    ? " (encoder blocks are not numbered 0, 1, 2, … without gaps)" : "";
                throw Fail($"arrays with no torchvision counterpart: {string.Join(", ", unused)}{hint}");
            }
            try { config.Validate(); }
            catch (ArgumentException e) { throw Fail($"inferred configuration is invalid: {e.Message}"); }
            return (config, sd);
        }
    }

    /// <summary>Slice <paramref name="i"/> of the leading axis (a scanned checkpoint's per-layer array).</summary>
    private static Tensor Layer(Tensor t, int i)
    {
        var shape = t.Shape[1..];
        int n = t.Size / t.Dim(0);
        return new Tensor(t.Data.AsSpan(i * n, n).ToArray(), shape);
    }

    /// <summary>A row-major copy of <paramref name="t"/> with its axes reordered (numpy's <c>transpose(axes)</c>).</summary>
    internal static Tensor Permute(Tensor t, params int[] axes)
    {
        var src = t.ShapeSpan;
        int rank = axes.Length;
        var shape = new int[rank];
        var stride = new long[rank];                 // the source stride of each output axis
        var srcStride = new long[rank];
        long s = 1;
        for (int k = rank - 1; k >= 0; k--) { srcStride[k] = s; s *= src[k]; }
        for (int k = 0; k < rank; k++) { shape[k] = src[axes[k]]; stride[k] = srcStride[axes[k]]; }
        var data = t.Data;
        var dst = new float[data.Length];
        var idx = new int[rank];
        long off = 0;
        for (int i = 0; i < dst.Length; i++)
        {
            dst[i] = data[off];
            for (int k = rank - 1; k >= 0; k--)
            {
                if (++idx[k] < shape[k]) { off += stride[k]; break; }
                off -= stride[k] * (shape[k] - 1);
                idx[k] = 0;
            }
        }
        return new Tensor(dst, shape);
    }
}
