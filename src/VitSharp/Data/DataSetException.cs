namespace VitSharp.Data;

/// <summary>
/// A data set file is missing, unreadable or malformed. The message is one line that names the file and,
/// where it applies, the byte offset of the problem (offsets inside a .gz file are offsets in the
/// decompressed stream).
/// </summary>
public sealed class DataSetException : Exception
{
    /// <summary>Creates an exception with a one-line message.</summary>
    public DataSetException(string message) : base(message) { }

    /// <summary>Creates an exception with a one-line message and the error that caused it.</summary>
    public DataSetException(string message, Exception inner) : base(message, inner) { }
}
