using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>Mutated CIFAR binaries (issue 14): one-line errors naming the file and record, bounded allocation.</summary>
public sealed class HostileCifarTests : IDisposable
{
    private const long AllocationBound = 64L << 20;

    private readonly TempDir _tmp = new("hostile-cifar");

    public void Dispose() => _tmp.Dispose();

    private static byte[] Records(int count, int labelBytes, Func<int, int, byte> label)
    {
        int rec = labelBytes + Cifar.ImageBytes;
        var b = new byte[count * rec];
        for (int r = 0; r < count; r++)
            for (int l = 0; l < labelBytes; l++) b[r * rec + l] = label(r, l);
        return b;
    }

    // Managed bytes allocated by this thread: the parsers run synchronously on it, and other test classes
    // running in parallel do not count (GC.GetTotalAllocatedBytes would include them).
    private static DataSetException Throws(Action load, out long allocated)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataSetException>(load);
        allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    private void WriteTrain(Func<int, byte[]> batch)
    {
        for (int i = 1; i <= 5; i++) File.WriteAllBytes(_tmp.File($"data_batch_{i}.bin"), batch(i));
    }

    [Fact]
    public void RecordCountThatDoesNotDivideTheFileFailsBeforeAllocating()
    {
        // Batch 4 is one byte short of 2,000 records (~6 MB): the error names it and the partial record's offset.
        WriteTrain(i => i == 4 ? new byte[2000 * 3073 - 1] : Records(10, 1, (r, _) => (byte)(r % 10)));
        var e = Throws(() => Cifar.Load10(_tmp.Path), out long allocated);
        Assert.Contains("data_batch_4.bin", e.Message);
        Assert.Contains("not a whole number of 3073-byte records", e.Message);
        Assert.Contains($"partial record of 3072 bytes at offset {1999 * 3073}", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void LabelOutOfRangeInALaterBatchNamesFileAndRecord()
    {
        WriteTrain(i => Records(4, 1, (r, _) => (byte)(i == 3 && r == 2 ? 200 : r)));
        var e = Throws(() => Cifar.Load10(_tmp.Path), out _);
        Assert.Contains("data_batch_3.bin", e.Message);
        Assert.Contains($"record 2 at offset {2 * 3073}: label 200", e.Message);
        Assert.Contains("out of range [0, 10)", e.Message);
    }

    [Fact]
    public void Cifar100CoarseLabelOutOfRange()
    {
        File.WriteAllBytes(_tmp.File("train.bin"), Records(3, 2, (r, l) => (byte)(l == 0 && r == 1 ? 20 : 5)));
        var e = Throws(() => Cifar.Load100(_tmp.Path, train: true, fineLabels: false), out _);
        Assert.Contains("train.bin", e.Message);
        Assert.Contains("record 1 at offset 3074: label 20 (byte offset 3074) is out of range [0, 20)", e.Message);
    }

    [Fact]
    public void EmptyFileIsAnError()
    {
        File.WriteAllBytes(_tmp.File("test_batch.bin"), []);
        var e = Throws(() => Cifar.Load10(_tmp.Path, train: false), out _);
        Assert.Contains("test_batch.bin", e.Message);
        Assert.Contains("empty file", e.Message);
    }
}
