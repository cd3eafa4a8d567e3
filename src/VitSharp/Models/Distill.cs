using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// vit-pytorch's <c>vit_pytorch.distill.DistillableViT</c>: a <see cref="ViT"/> (same configuration, same parameters and
/// state_dict keys) whose forward can take a distillation token. Given one, the token ([1, C]) is appended as the
/// <b>last</b> token after the positions were added (it gets no position), runs through the transformer with the
/// others, and is split off again before pooling: <see cref="Forward(Tensor, Tensor)"/> returns the class logits
/// and the distillation token's output embedding [B, C]. Without a token it computes exactly what <see cref="ViT"/> does.
/// </summary>
public sealed class DistillableViT : ViT
{
    /// <summary>The Python constructor name (for the factory and checkpoints).</summary>
    public const string ConstructorName = "vit_pytorch.distill.DistillableViT";

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public DistillableViT(ViTConfig config) : base(config) { }

    /// <summary>
    /// Forward with a distillation token <paramref name="distillToken"/> [1, C]: returns the class logits [B, classes]
    /// (the pooled features [B, C] when num_classes is 0) and the distillation token's embedding after the transformer
    /// (and its final LayerNorm) [B, C].
    /// </summary>
    public (Tensor Logits, Tensor DistillEmbedding) Forward(Tensor img, Tensor distillToken)
    {
        int c = Config.Dim;
        if (distillToken.Rank != 2 || distillToken.Dim(0) != 1 || distillToken.Dim(1) != c)
            throw new ArgumentException($"the distillation token must be [1, {c}], got {Tensor.ShapeString(distillToken.ShapeSpan)}");
        var x = Embed(img);                                               // [B, N(+1), C], positions added
        int b = x.Dim(0), n = x.Dim(1);
        x = Tensor.Cat([x, distillToken.Reshape(1, 1, c).BroadcastTo(b, 1, c)], 1);
        x = Transformer.Forward(x);                                        // [B, N(+1)+1, C]
        var tokens = x.Slice(1, 0, n);
        var distill = x.Slice(1, n, 1).Reshape(b, c);
        return (RunForwardHooks(img, distillToken, ForwardHead(tokens)), distill);
    }

    /// <summary>A plain <see cref="ViT"/> with the same configuration and a copy of these weights (vit-pytorch's <c>to_vit()</c>).</summary>
    public ViT ToViT()
    {
        var v = new ViT(Config);
        v.LoadStateDict(StateDict(), strict: true);
        return v;
    }
}

/// <summary>
/// Hyper-parameters of <see cref="DistillWrapper"/>: vit-pytorch's keyword arguments besides <c>teacher</c> and
/// <c>student</c>, with Python's names and defaults.
/// </summary>
public sealed record DistillConfig : ModelConfig<DistillConfig>
{
    /// <summary>The Python constructor (<see cref="DistillWrapper"/>'s).</summary>
    public const string Constructor = "vit_pytorch.distill.DistillWrapper";

    /// <summary>Softmax temperature T of the soft targets; must be &gt; 0.</summary>
    [Kwarg("temperature")] public float Temperature { get; init; } = 1f;
    /// <summary>Weight α of the distillation term: loss = (1 − α)·CE + α·distillation; in [0, 1].</summary>
    [Kwarg("alpha", Rate = true)] public float Alpha { get; init; } = 0.5f;
    /// <summary>Hard distillation: cross-entropy against the teacher's arg-max instead of the soft KL term.</summary>
    [Kwarg("hard")] public bool Hard { get; init; }
    /// <summary>A LayerNorm before the distillation head's Linear (key <c>distill_mlp.0</c>).</summary>
    [Kwarg("mlp_layernorm")] public bool MlpLayerNorm { get; init; }

    /// <inheritdoc/>
    protected override void CheckMore() => CheckTemperature(Temperature);

    internal static void CheckTemperature(float t)
    {
        if (!(t > 0) || float.IsInfinity(t)) throw new ArgumentException($"temperature must be > 0, got {t}");
    }
}

/// <summary>The parts of a <see cref="DistillWrapper"/> loss.</summary>
/// <param name="Loss">(1 − α)·<paramref name="ClassLoss"/> + α·<paramref name="DistillationLoss"/>.</param>
/// <param name="Logits">The student's class-token logits [B, classes].</param>
/// <param name="ClassLoss">Cross-entropy of the class logits against the labels.</param>
/// <param name="DistillationLoss">Soft: KL(softmax(t/T) ‖ softmax(d/T))·T², batch mean; hard: CE(d, argmax t).</param>
/// <param name="DistillLogits">The distillation head's logits d [B, classes].</param>
/// <param name="TeacherLogits">The teacher's logits t [B, classes] (computed without gradient).</param>
public sealed record DistillLoss(Tensor Loss, Tensor Logits, Tensor ClassLoss, Tensor DistillationLoss, Tensor DistillLogits, Tensor TeacherLogits)
    : ModelLoss(Loss, Logits);

/// <summary>
/// vit-pytorch's <c>vit_pytorch.distill.DistillWrapper</c>: knowledge distillation of a <see cref="DistillableViT"/>
/// student from any teacher <see cref="Module"/> that maps the student's images [B, c, H, W] to logits [B, classes]
/// (a CNN, another ViT, …). It owns a learned <c>distillation_token</c> [1, C] and the head <c>distill_mlp</c>
/// (Identity or LayerNorm, then Linear(C → classes): keys <c>distill_mlp.1.*</c>, plus <c>distill_mlp.0.*</c> with
/// <see cref="DistillConfig.MlpLayerNorm"/>); its state_dict holds <c>teacher.*</c>, <c>student.*</c>,
/// <c>distillation_token</c> and <c>distill_mlp.*</c>, as PyTorch's.
/// </summary>
/// <remarks>
/// <para>Loss (<see cref="ComputeLoss"/>): (1 − α)·CE(student class logits, labels) + α·L, where d = distill_mlp(distillation
/// token's output) and t = the teacher's logits; L = KL(log_softmax(d/T) ‖ softmax(t/T)) averaged over the batch × T²
/// (soft) or CE(d, argmax t) (hard).</para>
/// <para>The teacher is frozen: the constructor sets its parameters' <see cref="Tensor.RequiresGrad"/> to false, and it
/// always runs in eval mode under <see cref="Autograd.NoGrad"/> (vit-pytorch runs it in the wrapper's mode; eval mode
/// keeps a BatchNorm teacher's running statistics fixed while the student trains).</para>
/// <para><see cref="Module.Forward(Tensor)"/> returns the student's class-token logits, as vit-pytorch's inference does
/// (<c>student(img)</c> or <c>student.to_vit()</c>); <see cref="ForwardHeads"/> also gives the distillation head's logits
/// (DeiT averages the two).</para>
/// </remarks>
public sealed class DistillWrapper : Module, ILossModel, IImageModel
{
    /// <summary>The Python constructor name (for the factory and checkpoints).</summary>
    public const string ConstructorName = DistillConfig.Constructor;

    /// <summary>The teacher (key <c>teacher</c>): any module mapping images to logits; frozen.</summary>
    public Module Teacher { get; }
    /// <summary>The student (key <c>student</c>).</summary>
    public DistillableViT Student { get; }
    /// <summary>The learned distillation token [1, C] (key <c>distillation_token</c>).</summary>
    public Tensor DistillationToken { get; }
    /// <summary>The distillation head (key <c>distill_mlp</c>): Identity or LayerNorm, then Linear(C → classes).</summary>
    public Sequential DistillMlp { get; }
    /// <summary>Temperature, α, hard or soft, head LayerNorm.</summary>
    public DistillConfig Config { get; }

    /// <summary>
    /// Wraps <paramref name="teacher"/> and <paramref name="student"/>. The teacher is checked with one probe forward
    /// (eval mode, no gradient) on a zero image of the student's input shape: it must accept the student's images
    /// and predict as many classes as the student.
    /// </summary>
    /// <exception cref="ArgumentException">A bad temperature or α, a student without classes, or a teacher that does not
    /// fit the student (its class count or input shape).</exception>
    public DistillWrapper(Module teacher, DistillableViT student, DistillConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        config ??= new DistillConfig();
        config.Validate();
        var sc = student.Config;
        if (sc.NumClasses < 1) throw new ArgumentException("the distillation student needs num_classes ≥ 1 (it has no classifier)");
        Config = config;
        Teacher = RegisterModule("teacher", teacher);
        Student = RegisterModule("student", student);
        foreach (var p in teacher.Parameters()) p.RequiresGrad = false;
        CheckTeacher(sc);
        DistillationToken = RegisterParameter("distillation_token", Tensor.RandN(Init.Rng, 0, 1, 1, sc.Dim));
        DistillMlp = RegisterModule("distill_mlp", new Sequential(
            config.MlpLayerNorm ? new LayerNorm(sc.Dim) : new Identity(), new Linear(sc.Dim, sc.NumClasses)));
    }

    /// <inheritdoc/>
    /// <remarks>The student's, as every input goes to both the student and the teacher.</remarks>
    public int InputChannels => Student.InputChannels;
    /// <inheritdoc/>
    public int? InputHeight => Student.InputHeight;
    /// <inheritdoc/>
    public int? InputWidth => Student.InputWidth;

    private void CheckTeacher(ViTConfig sc)
    {
        var probe = new Tensor(1, sc.Channels, sc.ImageHeight, sc.ImageWidth);
        string shape = Tensor.ShapeString([1, sc.Channels, sc.ImageHeight, sc.ImageWidth]);
        int[] outShape;
        try
        {
            using var scope = TensorScope.Begin();
            outShape = TeacherLogits(probe).Shape;
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"the teacher ({Teacher.GetType().Name}) does not accept the student's images {shape}: {e.Message}");
        }
        if (outShape.Length != 2 || outShape[0] != 1)
            throw new ArgumentException($"the teacher ({Teacher.GetType().Name}) must map images to logits [B, classes], but returns {Tensor.ShapeString(outShape)} for {shape}");
        if (outShape[1] != sc.NumClasses)
            throw new ArgumentException($"the teacher predicts {outShape[1]} classes but the student {sc.NumClasses}; they must agree");
    }

    /// <summary>The teacher's logits [B, classes] for <paramref name="images"/>, in eval mode and without gradient.</summary>
    public Tensor TeacherLogits(Tensor images)
    {
        bool wasTraining = Teacher.Training;
        if (wasTraining) Teacher.Eval();
        try
        {
            using var noGrad = Autograd.NoGrad();
            return Teacher.Forward(images);
        }
        finally { if (wasTraining) Teacher.Train(); }
    }

    /// <summary>
    /// The wrapper's loss (vit-pytorch's <c>wrapper(img, labels)</c>) and its parts. <paramref name="temperature"/> and
    /// <paramref name="alpha"/> override the configuration for this call; <paramref name="labelSmoothing"/> applies to the
    /// class-token cross-entropy only (vit-pytorch: 0).
    /// </summary>
    public DistillLoss ComputeLoss(Tensor images, ReadOnlySpan<int> labels, float labelSmoothing = 0f, float? temperature = null, float? alpha = null)
    {
        float t = temperature ?? Config.Temperature, a = alpha ?? Config.Alpha;
        DistillConfig.CheckTemperature(t);
        Check.Rate(a, "alpha");
        var teacher = TeacherLogits(images);
        var (logits, distillTokens) = Student.Forward(images, DistillationToken);
        var distillLogits = DistillMlp.Forward(distillTokens);
        if (!teacher.SameShape(distillLogits))
            throw new ArgumentException($"the teacher's logits {Tensor.ShapeString(teacher.ShapeSpan)} do not match the student's {Tensor.ShapeString(distillLogits.ShapeSpan)}");
        var classLoss = F.CrossEntropy(logits, labels, labelSmoothing);
        var distillLoss = Config.Hard
            ? F.CrossEntropy(distillLogits, ArgMax(teacher))
            : F.SoftTargetKLDiv(distillLogits, teacher, t);
        var loss = classLoss * (1 - a) + distillLoss * a;
        return new DistillLoss(loss, logits, classLoss, distillLoss, distillLogits, teacher);
    }

    /// <summary>Index of the first largest value in each row of [B, K] (torch.argmax).</summary>
    private static int[] ArgMax(Tensor logits)
    {
        int b = logits.Dim(0), k = logits.Dim(1);
        var d = logits.Data;
        var result = new int[b];
        for (int i = 0; i < b; i++)
        {
            int best = 0;
            for (int j = 1; j < k; j++) if (d[i * k + j] > d[i * k + best]) best = j;
            result[i] = best;
        }
        return result;
    }

    ModelLoss ILossModel.ComputeLoss(Tensor images, ReadOnlySpan<int> labels, float labelSmoothing) => ComputeLoss(images, labels, labelSmoothing);

    /// <summary>
    /// The student's class-token logits and the distillation head's logits for <paramref name="images"/> (both [B, classes]);
    /// DeiT predicts with their average.
    /// </summary>
    public (Tensor ClassLogits, Tensor DistillLogits) ForwardHeads(Tensor images)
    {
        var (logits, distillTokens) = Student.Forward(images, DistillationToken);
        return (logits, DistillMlp.Forward(distillTokens));
    }

    /// <summary>The student's class-token logits [B, classes] (what <c>vit eval</c> and <c>vit predict</c> use).</summary>
    protected override Tensor ForwardCore(Tensor images) => Student.Forward(images);
}
