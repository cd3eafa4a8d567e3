using System.Text.Json.Nodes;
using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;

namespace VitSharp.Tests.NN;

/// <summary>
/// The one hook mechanism, <see cref="Module.RegisterForwardHook"/>: every module of every family fires once per forward
/// pass, children before parents and siblings in order, with the very tensors it took and returned (both inputs of
/// CaiT's two-input layers); handles remove hooks; hooks cost no allocation.
/// </summary>
public class ForwardHookTests
{
    /// <summary>Every family: a preset or a small model spec, and the mode to run it in.</summary>
    public static TheoryData<string, bool> Families()
    {
        var data = new TheoryData<string, bool>();
        foreach (var name in new[] { "vit-fmnist", "simplevit-fmnist", "deepvit-fmnist", "cait-fmnist", "t2t-fmnist", "pit-fmnist", "resnet18-fmnist", "vit_fmnist", "deit-distilled" })
            foreach (var training in new[] { false, true })
                data.Add(name, training);
        return data;
    }

    private static (Module Model, Tensor Images) Build(string name)
    {
        Init.Seed(11);
        if (name == "deit-distilled")
        {
            var spec = new ModelSpec(DeiTConfig.Constructor, new JsonObject
            {
                ["img_size"] = 12, ["patch_size"] = 4, ["in_chans"] = 1, ["num_classes"] = 3, ["embed_dim"] = 8, ["depth"] = 2,
                ["num_heads"] = 2, ["mlp_ratio"] = 2.0, ["drop_rate"] = 0.1, ["attn_drop_rate"] = 0.1, ["drop_path_rate"] = 0.1,
            });
            return (spec.Build(), TestData.Uniform(12, -1, 1, 2, 1, 12, 12));
        }
        var p = Presets.Get(name);
        return (p.Spec.Build(), TestData.Uniform(12, -1, 1, 2, p.Channels, p.ImageSize, p.ImageSize));
    }

    private sealed record Call(Module Module, ForwardInputs Inputs, Tensor Output);

    [Theory, MemberData(nameof(Families))]
    public void EveryModuleFiresOncePerForwardChildrenFirstSiblingsInOrderWithTheTensorsItTookAndReturned(string family, bool training)
    {
        var (model, images) = Build(family);
        model.Train(training);
        var calls = new List<Call>();
        var modules = model.NamedModules().ToList();
        var handles = modules.Select(m => m.Module.RegisterForwardHook((mod, inputs, output) => calls.Add(new Call(mod, inputs, output)))).ToList();
        Assert.True(model.HasForwardHooksInTree());

        for (int pass = 0; pass < 2; pass++)
        {
            calls.Clear();
            Dropout.Seed(5);
            var logits = model.Forward(images);

            // Once per module per forward, every module.
            var index = new Dictionary<Module, int>(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < calls.Count; i++)
                Assert.True(index.TryAdd(calls[i].Module, i), $"{family}: {Name(modules, calls[i].Module)} fired twice");
            var silent = modules.Where(m => !index.ContainsKey(m.Module) && m.Module is not ModuleList).Select(m => m.Name).ToList();
            Assert.True(silent.Count == 0, $"{family}: never fired: {string.Join(", ", silent)}");

            // The model last, with the images it took and the very logits it returned.
            Assert.Same(model, calls[^1].Module);
            Assert.Same(images, calls[^1].Inputs.Input);
            Assert.Same(logits, calls[^1].Output);

            foreach (var (name, m) in modules)
            {
                var children = m.NamedChildren().Select(c => c.Module).ToList();
                List<int> Fired(Module root) => root.NamedModules().Where(x => x.Module is not ModuleList).Select(x => index[x.Module]).ToList();
                if (m is ModuleList)
                {
                    // A container without a forward of its own (as in PyTorch): its items run one after another (a
                    // transformer's layers, a layer's attention then feed-forward).
                    Assert.False(index.ContainsKey(m));
                    for (int i = 1; i < children.Count; i++)
                        Assert.True(Fired(children[i - 1]).Max() < Fired(children[i]).Min(), $"{family}: {name}: item {i} ran before item {i - 1} was done");
                    continue;
                }
                // Every descendant before its parent.
                foreach (var d in Fired(m).Where(i => i != index[m]))
                    Assert.True(d < index[m], $"{family}: {Name(modules, calls[d].Module)} fired after its ancestor {name}");
                // A Sequential runs its children in order, each on the output of the one before, and returns the last one's.
                if (m is Sequential && children.Count > 0)
                {
                    Assert.Same(calls[index[m]].Inputs.Input, calls[index[children[0]]].Inputs.Input);
                    for (int i = 1; i < children.Count; i++)
                    {
                        Assert.True(index[children[i - 1]] < index[children[i]], $"{family}: {name}: child {i} fired before child {i - 1}");
                        Assert.Same(calls[index[children[i - 1]]].Output, calls[index[children[i]]].Inputs.Input);
                    }
                    Assert.Same(calls[index[children[^1]]].Output, calls[index[m]].Output);
                }
                // The attention probabilities: [B, H, N, M], rows summing to 1 (before any dropout).
                if (m is AttentionProbabilities)
                {
                    var p = calls[index[m]].Output;
                    Assert.Same(p, calls[index[m]].Inputs.Input);
                    Assert.Equal(4, p.Rank);
                    for (int row = 0; row < p.Size / p.Dim(3); row++)
                        Assert.Equal(1.0, p.Data.AsSpan(row * p.Dim(3), p.Dim(3)).ToArray().Sum(v => (double)v), 4);
                }
            }
        }

        handles.ForEach(h => h.Dispose());
        Assert.False(model.HasForwardHooksInTree());
        calls.Clear();
        model.Forward(images);
        Assert.Empty(calls);
    }

    private static string Name(List<(string Name, Module Module)> modules, Module m) =>
        modules.First(x => ReferenceEquals(x.Module, m)).Name is { Length: > 0 } n ? n : "(model)";

    [Fact]
    public void CaiTsClassAttentionLayersReportBothInputsTheTokensAndThePatchContext()
    {
        var (model, images) = Build("cait-fmnist");
        var cait = Assert.IsType<CaiT>(model);
        cait.Eval();
        var calls = new Dictionary<Module, ForwardInputs>(ReferenceEqualityComparer.Instance);
        var outputs = new Dictionary<Module, Tensor>(ReferenceEqualityComparer.Instance);
        var handles = cait.NamedModules().Select(m => m.Module.RegisterForwardHook((mod, inputs, output) => { calls[mod] = inputs; outputs[mod] = output; })).ToList();
        Dropout.Seed(2);
        cait.Forward(images);
        var patches = outputs[cait.PatchTransformer];
        Assert.Equal(1, calls[cait.PatchTransformer].Count);
        Assert.Null(calls[cait.PatchTransformer].Second);
        Assert.Equal(2, calls[cait.ClsTransformer].Count);
        Assert.Same(patches, calls[cait.ClsTransformer].Second);
        Assert.Same(patches, calls[cait.ClsTransformer][1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => calls[cait.PatchTransformer][1]);
        for (int i = 0; i < cait.ClsTransformer.Layers.Count; i++)
        {
            var pair = (ModuleList)cait.ClsTransformer.Layers[i];
            var attention = (LayerScale)pair[0];
            Assert.Same(patches, calls[attention].Second);                       // LayerScale(attention): x and the context
            Assert.Same(patches, calls[attention.Fn].Second);                    // the talking-heads attention itself
            Assert.Null(calls[pair[1]].Second);                                  // the feed-forward: one input
            var talking = (TalkingHeadsAttention)attention.Fn;
            Assert.Equal([images.Dim(0), 4, 1, 1 + patches.Dim(1)], outputs[talking.Attend].Shape);   // the class token over itself and the patches
        }
        handles.ForEach(h => h.Dispose());
    }

    [Fact]
    public void ADistillableViTsTwoInputForwardReportsTheImagesAndTheDistillationToken()
    {
        Init.Seed(3);
        var student = new DistillableViT(VitSharp.Tests.Models.DistillTests.Tiny());
        student.Eval();
        var images = TestData.Uniform(3, -1, 1, 2, 3, 8, 8);
        var token = TestData.Uniform(4, -1, 1, 1, student.Config.Dim);
        ForwardInputs seen = default;
        Tensor? output = null;
        using (student.RegisterForwardHook((_, inputs, y) => { seen = inputs; output = y; }))
        {
            var (logits, _) = student.Forward(images, token);
            Assert.Same(images, seen.Input);
            Assert.Same(token, seen.Second);
            Assert.Same(logits, output);
        }
    }

    [Fact]
    public void HandlesRemoveTheirOwnHookOnlyAndOnce()
    {
        var lin = new Linear(3, 2);
        var log = new List<string>();
        Action<Module, ForwardInputs, Tensor> same = (_, _, _) => log.Add("same");
        var first = lin.RegisterForwardHook(same);
        var second = lin.RegisterForwardHook(same);                              // the same delegate twice: two hooks
        IDisposable? self = null;
        self = lin.RegisterForwardHook((_, _, _) => { log.Add("once"); self!.Dispose(); });   // removes itself while the hooks run
        var x = Tensor.Zeros(4, 3);
        var y = lin.Forward(x);
        Assert.Equal(["same", "same", "once"], log);
        log.Clear();
        first.Dispose();
        first.Dispose();                                                         // again: nothing
        lin.Forward(x);
        Assert.Equal(["same"], log);
        Assert.True(lin.HasForwardHooks);
        second.Dispose();
        Assert.False(lin.HasForwardHooks);
        log.Clear();
        lin.Forward(x);
        Assert.Empty(log);
        Assert.Throws<ArgumentNullException>(() => lin.RegisterForwardHook(null!));
    }

    [Fact]
    public void AHookSeesTheInputItWasGivenAndTheOutputTheCallerGets()
    {
        var lin = new Linear(3, 2);
        var x = Tensor.Ones(4, 3);
        (Tensor In, Tensor Out)? seen = null;
        using var h = lin.RegisterForwardHook((_, inputs, y) => seen = (inputs.Input, y));
        var y = lin.Forward(x);
        Assert.Same(x, seen!.Value.In);
        Assert.Same(y, seen.Value.Out);
        Assert.Equal(1, new ForwardInputs(x).Count);
    }

    [Fact]
    public void TheRecordersMapsEqualANaiveRecomputationInEveryLayer()
    {
        // Layer by layer: softmax(q·kᵀ/√D) from the tokens that reach each attention block (seen by a hook on it).
        Init.Seed(8);
        var vit = new ViT(VitSharp.Tests.Models.DistillTests.Tiny(image: 8, patch: 4, depth: 3, heads: 2));
        vit.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 3, 8, 8);
        var blocks = vit.Transformer.AttentionBlocks().ToList();
        var inputs = new List<Tensor>();
        var handles = blocks.Select(b => b.RegisterForwardHook((_, i, _) => inputs.Add(i.Input.Clone()))).ToList();
        using var recorder = new Recorder(vit);
        var (_, attention) = recorder.Forward(img);                              // [B, L, H, N, N]
        handles.ForEach(h => h.Dispose());
        int b = 2, layers = 3, heads = 2, n = 5;
        Assert.Equal([b, layers, heads, n, n], attention.Shape);
        for (int l = 0; l < layers; l++)
        {
            var block = blocks[l];
            var qkv = block.ToQkv.Forward(block.Norm.Forward(inputs[l]));        // [B, N, 3·H·D]
            int d = qkv.Dim(2) / (3 * heads), inner = heads * d;
            for (int bi = 0; bi < b; bi++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < n; i++)
                    {
                        var s = new double[n];
                        for (int j = 0; j < n; j++)
                        {
                            double dot = 0;
                            for (int k = 0; k < d; k++) dot += (double)qkv[bi, i, h * d + k] * qkv[bi, j, inner + h * d + k];
                            s[j] = dot / Math.Sqrt(d);
                        }
                        double max = s.Max(), z = s.Sum(v => Math.Exp(v - max));
                        for (int j = 0; j < n; j++) Assert.Equal(Math.Exp(s[j] - max) / z, attention[bi, l, h, i, j], 1e-5);
                    }
        }
    }

    [Fact]
    public void TheRecorderRecordsEveryAttentionLayerOfDeepViTAndCaiT()
    {
        var (deep, images) = Build("deepvit-fmnist");
        deep.Eval();
        using (var r = new Recorder(deep))
        {
            Assert.All(r.Blocks, blk => Assert.IsType<ReAttention>(blk));
            var (_, maps) = r.Forward(images);
            Assert.Equal([2, 6, 4, 50, 50], maps.Shape);
        }
        var (cait, cImages) = Build("cait-fmnist");
        cait.Eval();
        using (var r = new Recorder(cait))
        {
            Assert.All(r.Blocks, blk => Assert.IsType<TalkingHeadsAttention>(blk));
            Dropout.Seed(1);
            Assert.Throws<InvalidOperationException>(() => r.Forward(cImages));   // patch maps [N, N], class maps [1, 1 + N]
            Assert.Equal(r.Blocks.Count, r.Recordings.Count);
        }
    }

    [Fact]
    public void AHookThatAllocatesNothingLeavesTheTrainingStepAllocationFree()
    {
        using var serial = VitSharp.Kernels.ComputeThreads.Serial();
        var (model, images) = Build("vit-fmnist");
        model.Train();
        var opt = new AdamW(model.NamedParameters());
        int fired = 0;
        Action<Module, ForwardInputs, Tensor> count = (_, _, _) => fired++;
        var handles = model.NamedModules().Select(m => m.Module.RegisterForwardHook(count)).ToList();
        int[] labels = [1, 7];
        long Measure()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            model.ZeroGrad(setToNone: false);
            using (TensorScope.Begin(recycleTensors: true))
                F.CrossEntropy(model.Forward(images), labels).Backward();
            opt.Step();
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        for (int i = 0; i < 3; i++) Measure();
        long steady = Enumerable.Range(0, 4).Select(_ => Measure()).Min();
        Assert.Equal(0, steady);
        Assert.Equal(7 * model.NamedModules().Count(m => m.Module is not ModuleList), fired);
        handles.ForEach(h => h.Dispose());
    }
}
