namespace VitSharp.NN;

/// <summary>
/// torch.nn.BatchNorm2d: per-channel normalisation of images [B, C, H, W] with affine <c>weight</c> (ones) and <c>bias</c>
/// (zeros) and the buffers <c>running_mean</c> (zeros), <c>running_var</c> (ones) and <c>num_batches_tracked</c> (a scalar,
/// stored as float32 here; int64 in PyTorch, converted on load and save). In training mode it normalises with the batch
/// statistics and updates the running ones (momentum 0.1 by default, unbiased variance; momentum null = cumulative
/// average 1/num_batches_tracked); in evaluation mode it uses the running statistics.
/// </summary>
public sealed class BatchNorm2d : Module
{
    /// <summary>Scale [C], or null without affine parameters.</summary>
    public Tensor? Weight { get; }
    /// <summary>Shift [C], or null without affine parameters.</summary>
    public Tensor? Bias { get; }
    /// <summary>Running mean [C], or null when running statistics are not tracked.</summary>
    public Tensor? RunningMean { get; }
    /// <summary>Running (unbiased) variance [C], or null when running statistics are not tracked.</summary>
    public Tensor? RunningVar { get; }
    /// <summary>Number of training batches seen (shape []), or null when running statistics are not tracked.</summary>
    public Tensor? NumBatchesTracked { get; }
    /// <summary>Channels C.</summary>
    public int NumFeatures { get; }
    /// <summary>Added to the variance.</summary>
    public float Eps { get; }
    /// <summary>Weight of the new batch in the running statistics; null for a cumulative average.</summary>
    public float? Momentum { get; }

    /// <summary>Creates the layer.</summary>
    public BatchNorm2d(int numFeatures, float eps = 1e-5f, float? momentum = 0.1f, bool affine = true, bool trackRunningStats = true)
    {
        if (numFeatures < 1) throw new ArgumentException($"BatchNorm2d: num_features must be positive, got {numFeatures}");
        NumFeatures = numFeatures; Eps = eps; Momentum = momentum;
        if (affine)
        {
            Weight = RegisterParameter("weight", Tensor.Ones(numFeatures));
            Bias = RegisterParameter("bias", Tensor.Zeros(numFeatures));
        }
        if (trackRunningStats)
        {
            RunningMean = RegisterBuffer("running_mean", Tensor.Zeros(numFeatures));
            RunningVar = RegisterBuffer("running_var", Tensor.Ones(numFeatures));
            NumBatchesTracked = RegisterBuffer("num_batches_tracked", Tensor.Scalar(0f));
        }
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input)
    {
        if (input.Rank != 4) throw new ArgumentException($"BatchNorm2d: expected images [B, C, H, W], got {Tensor.ShapeString(input.ShapeSpan)}");
        float factor = Momentum ?? 0f;
        if (Training && NumBatchesTracked is not null)
        {
            NumBatchesTracked.Data[0] += 1;
            if (Momentum is null) factor = 1f / NumBatchesTracked.Data[0];
        }
        // As PyTorch: batch statistics in training mode or when nothing is tracked; running ones are updated only in training.
        return F.BatchNorm(input, RunningMean, RunningVar, Weight, Bias, Training, factor, Eps);
    }
}
