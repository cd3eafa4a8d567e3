using VitSharp.Data;
using VitSharp.NN;

namespace VitSharp.Training;

/// <summary>Accuracy, per-class accuracy, confusion matrix (rows = true class, columns = predicted) and mean loss.</summary>
public sealed record EvalResult(double Accuracy, double[] PerClass, int[,] Confusion, double Loss, int Count, IReadOnlyList<string> ClassNames);

/// <summary>Runs a classifier over a data set without gradients.</summary>
public static class Evaluator
{
    /// <summary>Evaluates <paramref name="model"/> (switched to eval mode) on <paramref name="data"/> preprocessed by <paramref name="transform"/>.</summary>
    /// <remarks>With <paramref name="parallel"/> (a <see cref="DataParallel"/> over this model), each batch's two halves
    /// run at once on two cores. With <paramref name="distributed"/> (MPI initialised, see <see cref="VitSharp.Distributed"/>)
    /// each rank evaluates its shard of every batch and the confusion matrix and loss are summed over the ranks: every rank
    /// must call it, and gets the same result.</remarks>
    public static EvalResult Evaluate(Module model, IImageDataset data, ITransform? transform, int batchSize = 256,
        CancellationToken cancel = default, DataParallel? parallel = null, bool distributed = false)
    {
        distributed &= VitSharp.Distributed.Size > 1;
        bool wasTraining = model.Training;
        model.Eval();
        int k = data.NumClasses;
        var confusion = new int[k, k];
        double lossSum = 0;
        int count = 0;
        try
        {
            var loader = distributed
                ? new DataLoader(data, batchSize, shuffle: false, seed: 0, transform, shard: VitSharp.Distributed.Rank, shards: VitSharp.Distributed.Size)
                : new DataLoader(data, batchSize, shuffle: false, seed: 0, transform);
            using var noGrad = Autograd.NoGrad();
            foreach (var batch in loader.Epoch(0))
            {
                cancel.ThrowIfCancellationRequested();
                if (batch.Count == 0) continue;   // a shard of a last batch smaller than the ranks
                if (parallel is not null && batch.Count >= 2)
                {
                    int n0 = (batch.Count + 1) / 2;
                    var sums = new double[2];
                    var preds = new int[2][];
                    parallel.Forward(batch.Images, (h, x) =>
                    {
                        var labels = h == 0 ? batch.Labels[..n0] : batch.Labels[n0..];
                        var halfLogits = model.Forward(x);
                        sums[h] = F.CrossEntropy(halfLogits, labels).Item() * (double)labels.Length;
                        preds[h] = ArgMax(halfLogits);
                    });
                    lossSum += sums[0] + sums[1];
                    for (int i = 0; i < batch.Count; i++) confusion[batch.Labels[i], i < n0 ? preds[0][i] : preds[1][i - n0]]++;
                    count += batch.Count;
                    continue;
                }
                using var scope = TensorScope.Begin(recycleTensors: true);
                var logits = model.Forward(batch.Images);
                lossSum += F.CrossEntropy(logits, batch.Labels).Item() * batch.Count;
                var predicted = ArgMax(logits);
                for (int i = 0; i < batch.Count; i++) confusion[batch.Labels[i], predicted[i]]++;
                count += batch.Count;
            }
        }
        finally { model.Train(wasTraining); }
        if (distributed)
        {
            var sums = new double[k * k + 2];
            for (int t = 0; t < k; t++) for (int p = 0; p < k; p++) sums[t * k + p] = confusion[t, p];
            (sums[^2], sums[^1]) = (lossSum, count);
            VitSharp.Distributed.AllReduceSum(sums);
            for (int t = 0; t < k; t++) for (int p = 0; p < k; p++) confusion[t, p] = (int)Math.Round(sums[t * k + p]);
            (lossSum, count) = (sums[^2], (int)Math.Round(sums[^1]));
        }
        var perClass = new double[k];
        int correct = 0;
        for (int c = 0; c < k; c++)
        {
            int total = 0;
            for (int p = 0; p < k; p++) total += confusion[c, p];
            perClass[c] = total == 0 ? double.NaN : (double)confusion[c, c] / total;
            correct += confusion[c, c];
        }
        return new EvalResult(count == 0 ? double.NaN : (double)correct / count, perClass, confusion, count == 0 ? double.NaN : lossSum / count, count, data.ClassNames);
    }

    /// <summary>Index of the largest logit in each row of [B, K].</summary>
    public static int[] ArgMax(Tensor logits)
    {
        int b = logits.Dim(0), k = logits.Dim(1);
        var result = new int[b];
        var d = logits.Data;
        for (int i = 0; i < b; i++)
        {
            int best = 0;
            for (int j = 1; j < k; j++) if (d[i * k + j] > d[i * k + best]) best = j;
            result[i] = best;
        }
        return result;
    }
}
