using VitSharp.IO;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>Reports synchronously on the training thread (unlike <see cref="Progress{T}"/>, which posts).</summary>
internal sealed class SyncProgress(Action<TrainEvent> onReport) : IProgress<TrainEvent>
{
    public List<TrainEvent> Events { get; } = new();

    public void Report(TrainEvent value)
    {
        Events.Add(value);
        onReport(value);
    }
}

internal static class TrainingTestUtil
{
    /// <summary>The deterministic part of an epoch's metrics (no wall-clock fields).</summary>
    public static (int, long, double, double, double, double, float) Curve(EpochMetrics m) =>
        (m.Epoch, m.Step, m.TrainLoss, m.TrainAccuracy, m.TestLoss, m.TestAccuracy, m.LearningRate);

    public static void AssertSameCurve(IReadOnlyList<EpochMetrics> expected, IReadOnlyList<EpochMetrics> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(Curve(expected[i]), Curve(actual[i]));
    }

    /// <summary>Asserts two safetensors files hold the same tensor names, shapes and bit-identical values.</summary>
    public static void AssertSameTensors(string expectedPath, string actualPath)
    {
        var expected = Weights.Load(expectedPath);
        var actual = Weights.Load(actualPath);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.Equal(e.Shape, a.Shape);
            for (int i = 0; i < e.Size; i++)
                if (BitConverter.SingleToInt32Bits(e.Data[i]) != BitConverter.SingleToInt32Bits(a.Data[i]))
                    Assert.Fail($"tensor '{name}' element {i}: {a.Data[i]:R}, expected {e.Data[i]:R}");
        }
    }

    public static bool SameTensors(string path1, string path2)
    {
        try { AssertSameTensors(path1, path2); return true; }
        catch (Xunit.Sdk.XunitException) { return false; }
    }
}
