using VitSharp.Tests.Cli;

namespace VitSharp.Tests.Distributed;

/// <summary><c>vit train</c>'s distributed options and set-up errors: one line naming the problem, no stack trace.</summary>
public sealed class DistributedCliTests
{
    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    public void ANonPositiveMpiTimeoutIsAnError(string seconds) =>
        CliAssert.OneLineError(TrainCliTests.Run("train", "--mpi-timeout", seconds, "--out", Path.Combine(Path.GetTempPath(), "vitsharp-never-written")),
            "--mpi-timeout must be a number of seconds > 0");

    [Trait("Category", "Process")]
    [Fact]
    public void LaunchedByMpirunWithoutOpenMpisLibraryItSaysWhatToInstall()
    {
        var env = new Dictionary<string, string>
        {
            ["OMPI_COMM_WORLD_SIZE"] = "2", ["OMPI_COMM_WORLD_RANK"] = "0",   // what mpirun sets
            ["VITSHARP_MPI_LIBRARY"] = "/nonexistent/libmpi.so.40",            // as on a machine without Open MPI
        };
        using var vit = MpiJob.StartAlone(env, "train", "--train-limit", "64", "--epochs", "1", "--out", Path.Combine(Path.GetTempPath(), "vitsharp-never-written"));
        vit.WaitForExit(TimeSpan.FromSeconds(60));
        CliAssert.OneLineError((vit.ExitCode, string.Join('\n', vit.Out), string.Join('\n', vit.Err)),
            "cannot load Open MPI's library", "/nonexistent/libmpi.so.40", "apt-get install openmpi-bin");
    }

    [Trait("Category", "Process")]
    [Fact]
    public void BenchProfileUnderMpirunIsAOneLineError()
    {
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "2", ["OMPI_COMM_WORLD_RANK"] = "0" };
        using var vit = MpiJob.StartAlone(env, "bench", "--train", "--profile");
        vit.WaitForExit(TimeSpan.FromSeconds(60));
        CliAssert.OneLineError((vit.ExitCode, string.Join('\n', vit.Out), string.Join('\n', vit.Err)), "--profile", "without mpirun");
    }
}
