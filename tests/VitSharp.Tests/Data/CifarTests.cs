using VitSharp.Data;

namespace VitSharp.Tests.Data;

public sealed class CifarTests : IDisposable
{
    private readonly TempDir _tmp = new("cifar");

    public void Dispose() => _tmp.Dispose();

    /// <summary>Records with label bytes <paramref name="labels"/>[r] and pixel byte k of record r = (r·31 + k) mod 256.</summary>
    private static byte[] Records(byte[][] labels)
    {
        int lb = labels[0].Length, rec = lb + 3072;
        var b = new byte[labels.Length * rec];
        for (int r = 0; r < labels.Length; r++)
        {
            labels[r].CopyTo(b, r * rec);
            for (int k = 0; k < 3072; k++) b[r * rec + lb + k] = (byte)(r * 31 + k);
        }
        return b;
    }

    private void WriteCifar10(string dir, int perBatch, bool train = true)
    {
        Directory.CreateDirectory(dir);
        string[] files = train ? Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin").ToArray() : ["test_batch.bin"];
        int start = 0;
        foreach (var f in files)
        {
            var labels = Enumerable.Range(start, perBatch).Select(i => new[] { (byte)(i % 10) }).ToArray();
            File.WriteAllBytes(Path.Combine(dir, f), Records(labels));
            start += perBatch;
        }
    }

    [Fact]
    public void Cifar10Train()
    {
        WriteCifar10(_tmp.Path, 3);
        var ds = Cifar.Load10(_tmp.Path, train: true);
        Assert.Equal(15, ds.Count);
        Assert.Equal((3, 32, 32, 10), (ds.Channels, ds.Height, ds.Width, ds.NumClasses));
        Assert.Equal("airplane", ds.ClassNames[0]);
        for (int i = 0; i < 15; i++) Assert.Equal(i % 10, ds.Label(i));
        var px = new float[3072];
        ds.ReadPixels(4, px); // batch 2, record 1
        Assert.Equal((byte)(1 * 31 + 0) / 255f, px[0]);            // R(0,0)
        Assert.Equal(unchecked((byte)(1 * 31 + 1024 + 33)) / 255f, px[1024 + 33]); // G(1,1)
        Assert.Equal(unchecked((byte)(1 * 31 + 3071)) / 255f, px[3071]);      // B(31,31)
    }

    [Fact]
    public void Cifar10TestSplitInSubfolderWithMeta()
    {
        string dir = Path.Combine(_tmp.Path, "cifar-10-batches-bin");
        WriteCifar10(dir, 4, train: false);
        File.WriteAllLines(Path.Combine(dir, "batches.meta.txt"), ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", ""]);
        var ds = Cifar.Load10(_tmp.Path, train: false);
        Assert.Equal(4, ds.Count);
        Assert.Equal("j", ds.ClassNames[9]);
    }

    [Fact]
    public void Cifar10MissingFilesAreListed()
    {
        WriteCifar10(_tmp.Path, 2);
        File.Delete(_tmp.File("data_batch_3.bin"));
        var e = Assert.Throws<DataSetException>(() => Cifar.Load10(_tmp.Path, train: true));
        Assert.Contains("data_batch_3.bin", e.Message);
        Assert.Contains("data_batch_1.bin", e.Message); // the expected list
        Assert.Contains(_tmp.Path, e.Message);
    }

    [Fact]
    public void Cifar10PartialRecord()
    {
        WriteCifar10(_tmp.Path, 2, train: false);
        string f = _tmp.File("test_batch.bin");
        File.WriteAllBytes(f, File.ReadAllBytes(f)[..(3073 + 100)]);
        var e = Assert.Throws<DataSetException>(() => Cifar.Load10(_tmp.Path, train: false));
        Assert.Contains("test_batch.bin", e.Message);
        Assert.Contains("offset 3073", e.Message);
        Assert.Contains("100 bytes", e.Message);
    }

    [Fact]
    public void Cifar10LabelOutOfRange()
    {
        WriteCifar10(_tmp.Path, 3, train: false);
        string f = _tmp.File("test_batch.bin");
        var b = File.ReadAllBytes(f);
        b[2 * 3073] = 10;
        File.WriteAllBytes(f, b);
        var e = Assert.Throws<DataSetException>(() => Cifar.Load10(_tmp.Path, train: false));
        Assert.Contains("test_batch.bin", e.Message);
        Assert.Contains("record 2", e.Message);
        Assert.Contains("offset 6146", e.Message);
        Assert.Contains("label 10", e.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Cifar100(bool fine)
    {
        var labels = Enumerable.Range(0, 5).Select(i => new[] { (byte)(i * 4 % 20), (byte)(i * 21 % 100) }).ToArray();
        File.WriteAllBytes(_tmp.File("train.bin"), Records(labels));
        var ds = Cifar.Load100(_tmp.Path, train: true, fineLabels: fine);
        Assert.Equal(5, ds.Count);
        Assert.Equal(fine ? 100 : 20, ds.NumClasses);
        for (int i = 0; i < 5; i++) Assert.Equal(labels[i][fine ? 1 : 0], ds.Label(i));
        var px = new float[3072];
        ds.ReadPixels(3, px);
        Assert.Equal((byte)(3 * 31 + 5) / 255f, px[5]);
        Assert.Equal("99", fine ? ds.ClassNames[99] : "99");
    }

    [Fact]
    public void Cifar100NamesAndErrors()
    {
        var labels = Enumerable.Range(0, 3).Select(i => new[] { (byte)1, (byte)(i == 1 ? 100 : 7) }).ToArray();
        File.WriteAllBytes(_tmp.File("test.bin"), Records(labels));
        File.WriteAllLines(_tmp.File("coarse_label_names.txt"), Enumerable.Range(0, 20).Select(i => $"coarse{i}"));
        var coarse = Cifar.Load100(_tmp.Path, train: false, fineLabels: false);
        Assert.Equal("coarse1", coarse.ClassNames[coarse.Label(0)]);
        var e = Assert.Throws<DataSetException>(() => Cifar.Load100(_tmp.Path, train: false, fineLabels: true));
        Assert.Contains("test.bin", e.Message);
        Assert.Contains("record 1 at offset 3074", e.Message);
        var missing = Assert.Throws<DataSetException>(() => Cifar.Load100(_tmp.Path, train: true));
        Assert.Contains("train.bin", missing.Message);
    }
}
