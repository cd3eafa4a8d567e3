using SharpFuzz;
using VitSharp.Fuzz;

// Usage:
//   VitSharp.Fuzz TARGET                 run under afl-fuzz (SharpFuzz out-of-process, persistent mode)
//   VitSharp.Fuzz TARGET --replay FILE…  run the contract on files without AFL (triage); exit 1 on a violation
//   VitSharp.Fuzz TARGET --seeds DIR     write tiny valid inputs for TARGET into DIR
if (args.Length < 1 || !FuzzTargets.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: VitSharp.Fuzz {{{string.Join("|", FuzzTargets.Names)}}} [--replay FILE…]");
    return 2;
}
string target = args[0];
if (args.Length == 3 && args[1] == "--seeds")
{
    Seeds.Write(target, args[2]);
    return 0;
}
if (args.Length > 1 && args[1] == "--replay")
{
    int bad = 0;
    foreach (var file in args.Skip(2))
    {
        try
        {
            string outcome = FuzzTargets.Run(target, File.ReadAllBytes(file));
            Console.WriteLine($"ok    {file}: {outcome}");
        }
        catch (Exception e)
        {
            bad++;
            Console.WriteLine($"CRASH {file}: {e.GetType().FullName}: {e.Message.Split('\n')[0]}");
            string? frame = e.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains(" VitSharp.") && !l.Contains("VitSharp.Fuzz"));
            if (frame is not null) Console.WriteLine($"      {frame.Trim()}");
        }
    }
    return bad == 0 ? 0 : 1;
}

Fuzzer.OutOfProcess.Run(stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    FuzzTargets.Run(target, ms.ToArray());
});
return 0;
