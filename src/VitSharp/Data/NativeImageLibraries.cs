using System.Runtime.InteropServices;

namespace VitSharp.Data;

/// <summary>
/// libspng (PNG) bound at run time from Debian's libspng0 (<c>libspng.so.0</c>) through
/// <see cref="NativeLibrary"/>; null members when the library is absent.
/// </summary>
internal static unsafe class Spng
{
    internal const string LibraryName = "libspng.so.0";
    internal const string Missing = "PNG decoding needs libspng (apt-get install libspng0)";

    internal const int CtxEncoder = 2;          // SPNG_CTX_ENCODER
    internal const int FmtRgba8 = 1;            // SPNG_FMT_RGBA8
    internal const int FmtRgb8 = 4;             // SPNG_FMT_RGB8
    internal const int FmtPng = 256;            // SPNG_FMT_PNG (the IHDR's own format)
    internal const int EncodeFinalize = 2;      // SPNG_ENCODE_FINALIZE
    internal const int OptionEncodeToBuffer = 12; // SPNG_ENCODE_TO_BUFFER
    internal const byte ColorGrey = 0, ColorRgb = 2, ColorIndexed = 3, ColorGreyAlpha = 4, ColorRgba = 6;

    /// <summary>struct spng_ihdr.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Ihdr
    {
        public uint Width;
        public uint Height;
        public byte BitDepth;
        public byte ColorType;
        public byte CompressionMethod;
        public byte FilterMethod;
        public byte InterlaceMethod;
    }

    internal sealed class Api
    {
        public delegate* unmanaged<int, IntPtr> CtxNew;
        public delegate* unmanaged<IntPtr, void> CtxFree;
        public delegate* unmanaged<IntPtr, byte*, nuint, int> SetPngBuffer;
        public delegate* unmanaged<IntPtr, Ihdr*, int> GetIhdr;
        public delegate* unmanaged<IntPtr, int, nuint*, int> DecodedImageSize;
        public delegate* unmanaged<IntPtr, byte*, nuint, int, int, int> DecodeImage;
        public delegate* unmanaged<int, sbyte*> StrError;
        public delegate* unmanaged<IntPtr, int, int, int> SetOption;
        public delegate* unmanaged<IntPtr, Ihdr*, int> SetIhdr;
        public delegate* unmanaged<IntPtr, byte*, nuint, int, int, int> EncodeImage;
        public delegate* unmanaged<IntPtr, nuint*, int*, byte*> GetPngBuffer;
        public delegate* unmanaged<IntPtr, int> DecodeChunks;

        public string Error(int code) => new(StrError(code));
    }

    private static readonly Lazy<Api?> _api = new(Load);

    /// <summary>The bound API, or null when libspng cannot be loaded.</summary>
    internal static Api? TryGet() => _api.Value;

    private static Api? Load()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out IntPtr lib)) return null;
        try
        {
            return new Api
            {
                CtxNew = (delegate* unmanaged<int, IntPtr>)NativeLibrary.GetExport(lib, "spng_ctx_new"),
                CtxFree = (delegate* unmanaged<IntPtr, void>)NativeLibrary.GetExport(lib, "spng_ctx_free"),
                SetPngBuffer = (delegate* unmanaged<IntPtr, byte*, nuint, int>)NativeLibrary.GetExport(lib, "spng_set_png_buffer"),
                GetIhdr = (delegate* unmanaged<IntPtr, Ihdr*, int>)NativeLibrary.GetExport(lib, "spng_get_ihdr"),
                DecodedImageSize = (delegate* unmanaged<IntPtr, int, nuint*, int>)NativeLibrary.GetExport(lib, "spng_decoded_image_size"),
                DecodeImage = (delegate* unmanaged<IntPtr, byte*, nuint, int, int, int>)NativeLibrary.GetExport(lib, "spng_decode_image"),
                StrError = (delegate* unmanaged<int, sbyte*>)NativeLibrary.GetExport(lib, "spng_strerror"),
                SetOption = (delegate* unmanaged<IntPtr, int, int, int>)NativeLibrary.GetExport(lib, "spng_set_option"),
                SetIhdr = (delegate* unmanaged<IntPtr, Ihdr*, int>)NativeLibrary.GetExport(lib, "spng_set_ihdr"),
                EncodeImage = (delegate* unmanaged<IntPtr, byte*, nuint, int, int, int>)NativeLibrary.GetExport(lib, "spng_encode_image"),
                GetPngBuffer = (delegate* unmanaged<IntPtr, nuint*, int*, byte*>)NativeLibrary.GetExport(lib, "spng_get_png_buffer"),
                DecodeChunks = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(lib, "spng_decode_chunks"),
            };
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }
}

/// <summary>
/// The TurboJPEG API of libjpeg-turbo bound at run time from Debian's libturbojpeg0
/// (<c>libturbojpeg.so.0</c>); null when the library is absent.
/// </summary>
internal static unsafe class TurboJpeg
{
    internal const string LibraryName = "libturbojpeg.so.0";
    internal const string Missing = "JPEG decoding needs libturbojpeg (apt-get install libturbojpeg0)";

    internal const int PixelRgb = 0;   // TJPF_RGB
    internal const int PixelGray = 6;  // TJPF_GRAY
    internal const int ColorspaceGray = 2; // TJCS_GRAY
    internal const int Samp444 = 0;    // TJSAMP_444
    internal const int SampGray = 3;   // TJSAMP_GRAY
    internal const int FlagAccurateDct = 4096; // TJFLAG_ACCURATEDCT
    internal const int FlagStopOnWarning = 8192; // TJFLAG_STOPONWARNING
    internal const int ErrorWarning = 0; // TJERR_WARNING

    internal sealed class Api
    {
        public delegate* unmanaged<IntPtr> InitDecompress;
        public delegate* unmanaged<IntPtr> InitCompress;
        public delegate* unmanaged<IntPtr, int> Destroy;
        public delegate* unmanaged<IntPtr, byte*, nuint, int*, int*, int*, int*, int> DecompressHeader3;
        public delegate* unmanaged<IntPtr, byte*, nuint, byte*, int, int, int, int, int, int> Decompress2;
        public delegate* unmanaged<IntPtr, byte*, int, int, int, int, byte**, nuint*, int, int, int, int> Compress2;
        public delegate* unmanaged<byte*, void> Free;
        public delegate* unmanaged<IntPtr, sbyte*> GetErrorStr2;
        public delegate* unmanaged<IntPtr, int> GetErrorCode;

        public string Error(IntPtr handle) => new(GetErrorStr2(handle));
    }

    private static readonly Lazy<Api?> _api = new(Load);

    /// <summary>The bound API, or null when libturbojpeg cannot be loaded.</summary>
    internal static Api? TryGet() => _api.Value;

    private static Api? Load()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out IntPtr lib)) return null;
        try
        {
            return new Api
            {
                InitDecompress = (delegate* unmanaged<IntPtr>)NativeLibrary.GetExport(lib, "tjInitDecompress"),
                InitCompress = (delegate* unmanaged<IntPtr>)NativeLibrary.GetExport(lib, "tjInitCompress"),
                Destroy = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(lib, "tjDestroy"),
                DecompressHeader3 = (delegate* unmanaged<IntPtr, byte*, nuint, int*, int*, int*, int*, int>)NativeLibrary.GetExport(lib, "tjDecompressHeader3"),
                Decompress2 = (delegate* unmanaged<IntPtr, byte*, nuint, byte*, int, int, int, int, int, int>)NativeLibrary.GetExport(lib, "tjDecompress2"),
                Compress2 = (delegate* unmanaged<IntPtr, byte*, int, int, int, int, byte**, nuint*, int, int, int, int>)NativeLibrary.GetExport(lib, "tjCompress2"),
                Free = (delegate* unmanaged<byte*, void>)NativeLibrary.GetExport(lib, "tjFree"),
                GetErrorStr2 = (delegate* unmanaged<IntPtr, sbyte*>)NativeLibrary.GetExport(lib, "tjGetErrorStr2"),
                GetErrorCode = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(lib, "tjGetErrorCode"),
            };
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }
}
