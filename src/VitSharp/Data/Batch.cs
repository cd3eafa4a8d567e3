namespace VitSharp.Data;

/// <summary>One mini-batch from a <see cref="DataLoader"/>. Each batch owns fresh arrays: nothing is reused later.</summary>
public sealed class Batch
{
    internal Batch(Tensor images, int[] labels, int[] indices, int? globalCount = null)
    {
        Images = images;
        Labels = labels;
        Indices = indices;
        GlobalCount = globalCount ?? labels.Length;
    }

    /// <summary>Samples of the whole batch across every shard (<see cref="DataLoader"/>'s <c>shards</c>); equal to
    /// <see cref="Count"/> when the loader is not sharded.</summary>
    public int GlobalCount { get; }

    /// <summary>The images, shape [B, C, H, W], after the loader's transform.</summary>
    public Tensor Images { get; }

    /// <summary>The B labels.</summary>
    public int[] Labels { get; }

    /// <summary>The data set index of each sample.</summary>
    public int[] Indices { get; }

    /// <summary>Number of samples B (the last batch of an epoch may be smaller unless dropLast).</summary>
    public int Count => Labels.Length;
}
