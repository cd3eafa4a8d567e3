using System.Runtime.InteropServices;

namespace VitSharp;

/// <summary>
/// The few MPI functions VitSharp calls, bound at run time from Open MPI's <c>libmpi.so.40</c> (Debian's
/// <c>libopenmpi3</c>, pulled in by <c>openmpi-bin</c>). Open MPI's handles are the addresses of exported globals
/// (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, …), resolved here with <see cref="NativeLibrary.GetExport"/>;
/// the functions are called through unmanaged function pointers, so a call marshals and allocates nothing.
/// </summary>
internal static unsafe class MpiNative
{
    public const int Success = 0;
    public const int ThreadSerialized = 2;
    private const int RtldNow = 2, RtldGlobal = 0x100;

    /// <summary>The library file names tried in order (the first that loads wins); <c>VITSHARP_MPI_LIBRARY</c> replaces them.</summary>
    public static readonly string[] LibraryNames = ["libmpi.so.40", "libmpi.so"];

    public static nint Library;
    public static nint CommWorld, Float, Double, OpSum, ErrorsReturn;
    public static readonly void* InPlace = (void*)1;   // MPI_IN_PLACE in Open MPI's mpi.h

    public static delegate* unmanaged<int*, byte***, int, int*, int> InitThread;
    public static delegate* unmanaged<int*, int> Initialized;
    public static delegate* unmanaged<int*, int> Finalized;
    public static delegate* unmanaged<int> Finalize;
    public static delegate* unmanaged<nint, int*, int> CommRank;
    public static delegate* unmanaged<nint, int*, int> CommSize;
    public static delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public static delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce;
    public static delegate* unmanaged<void*, int, nint, int, nint, int> Bcast;
    public static delegate* unmanaged<nint, int> Barrier;
    public static delegate* unmanaged<nint, int, int> Abort;
    public static delegate* unmanaged<int, byte*, int*, int> ErrorString;
    public static delegate* unmanaged<byte*, int*, int> GetLibraryVersion;

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint DlOpen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);

    [DllImport("libc", EntryPoint = "dlerror")]
    private static extern nint DlError();

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "_exit")]
    public static extern void Exit(int status);

    /// <summary>
    /// Loads the library with RTLD_GLOBAL (Open MPI's plug-ins expect its symbols to be global) and resolves every
    /// function and handle; throws <see cref="DistributedException"/> saying what to install when it cannot.
    /// </summary>
    public static void Load()
    {
        if (Library != 0) return;
        if (!OperatingSystem.IsLinux())
            throw new DistributedException("distributed training needs Linux with Open MPI (Debian: apt-get install openmpi-bin)");
        string[] names = Environment.GetEnvironmentVariable("VITSHARP_MPI_LIBRARY") is { Length: > 0 } custom ? [custom] : LibraryNames;
        nint handle = 0;
        string? why = null;
        foreach (var name in names)
        {
            handle = DlOpen(name, RtldNow | RtldGlobal);
            if (handle != 0) break;
            why ??= Marshal.PtrToStringUTF8(DlError());
        }
        if (handle == 0)
            throw new DistributedException($"cannot load Open MPI's library ({string.Join(" or ", names)}: {why}); " +
                "install it with: apt-get install openmpi-bin (Debian; MPICH's libmpi.so.12 has another ABI and is not supported)");
        try
        {
            T F<T>(string name) where T : unmanaged => NativeLibrary.TryGetExport(handle, name, out var p)
                ? *(T*)&p
                : throw new DistributedException($"{names[0]} has no symbol {name}: it is not Open MPI's libmpi (install openmpi-bin; MPICH is not supported)");
            nint G(string name) => F<nint>(name);
            CommWorld = G("ompi_mpi_comm_world");
            Float = G("ompi_mpi_float");
            Double = G("ompi_mpi_double");
            OpSum = G("ompi_mpi_op_sum");
            ErrorsReturn = G("ompi_mpi_errors_return");
            InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)G("MPI_Init_thread");
            Initialized = (delegate* unmanaged<int*, int>)G("MPI_Initialized");
            Finalized = (delegate* unmanaged<int*, int>)G("MPI_Finalized");
            Finalize = (delegate* unmanaged<int>)G("MPI_Finalize");
            CommRank = (delegate* unmanaged<nint, int*, int>)G("MPI_Comm_rank");
            CommSize = (delegate* unmanaged<nint, int*, int>)G("MPI_Comm_size");
            CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)G("MPI_Comm_set_errhandler");
            Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)G("MPI_Allreduce");
            Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)G("MPI_Bcast");
            Barrier = (delegate* unmanaged<nint, int>)G("MPI_Barrier");
            Abort = (delegate* unmanaged<nint, int, int>)G("MPI_Abort");
            ErrorString = (delegate* unmanaged<int, byte*, int*, int>)G("MPI_Error_string");
            GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)G("MPI_Get_library_version");
        }
        catch
        {
            CommWorld = 0;
            throw;
        }
        // Open MPI would install its own SIGSEGV/SIGBUS/SIGFPE handlers, which .NET needs for its own (null references,
        // stack overflow); an empty list keeps them off. Set in the native environment, where Open MPI reads it.
        if (Environment.GetEnvironmentVariable("OMPI_MCA_opal_signal") is null) SetEnv("OMPI_MCA_opal_signal", "", 0);
        Library = handle;
    }

    /// <summary>MPI_Error_string of <paramref name="code"/>.</summary>
    public static string Describe(int code)
    {
        byte* buffer = stackalloc byte[512];
        int length = 0;
        return ErrorString is not null && ErrorString(code, buffer, &length) == Success
            ? System.Text.Encoding.UTF8.GetString(buffer, Math.Clamp(length, 0, 511)).Trim()
            : $"MPI error {code}";
    }
}
