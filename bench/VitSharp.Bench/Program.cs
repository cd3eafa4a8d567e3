using BenchmarkDotNet.Running;
using VitSharp.Bench;

// dotnet run -c Release --project bench/VitSharp.Bench -- gemm [--quick]   : interleaved GEMM table
// dotnet run -c Release --project bench/VitSharp.Bench -- gemm-tune        : managed KC/MC sweep
// dotnet run -c Release --project bench/VitSharp.Bench -- train-step [--model vit-fmnist] [--batch 128] [--steps 10]
// dotnet run -c Release --project bench/VitSharp.Bench -- attention [--rounds N] [--shapes BxNxHxD,...] [--no-prefetch] : tile vs GEMM attention
// dotnet run -c Release --project bench/VitSharp.Bench -- attention-parts [--tokens N] [--dim D] : one tile group's pieces
// dotnet run -c Release --project bench/VitSharp.Bench -- pth-load [--model vit_b_16] [--rounds 5] : TorchFile.LoadStateDict time and peak memory
// dotnet run -c Release --project bench/VitSharp.Bench -- lowp [--quick]   : fp32 vs int8 vs bf16 Linear (ViT-B/16, DeiT-S b32 shapes)
// dotnet run -c Release --project bench/VitSharp.Bench -- fusion [--model deit-s16] [--batch 32] [--precision int8] : Linear→GELU fusion on/off, alternating
// dotnet run -c Release --project bench/VitSharp.Bench -- gemm-direct [--shapes 3200x96x96t,...] : experiment, A read in place (no packing)
// dotnet run -c Release --project bench/VitSharp.Bench -- bdn [BDN args]   : BenchmarkDotNet (BenchmarkSwitcher)
string mode = args.Length > 0 ? args[0] : "gemm";
switch (mode)
{
    case "gemm":
        GemmTable.Run(args.Skip(1).ToArray());
        return 0;
    case "gemm-tune":
        GemmTable.Tune(args.Skip(1).ToArray());
        return 0;
    case "gemm-direct":
        VitSharp.Bench.Experiments.DirectAGemm.Run(args.Skip(1).ToArray());
        return 0;
    case "train-step":
        TrainStepBench.Run(args.Skip(1).ToArray());
        return 0;
    case "attention":
        AttentionTable.Run(args.Skip(1).ToArray());
        return 0;
    case "attention-parts":
        AttentionPartsBench.Run(args.Skip(1).ToArray());
        return 0;
    case "pth-load":
        PthLoadBench.Run(args.Skip(1).ToArray());
        return 0;
    case "lowp":
        LowPrecisionTable.Run(args.Skip(1).ToArray());
        return 0;
    case "fusion":
        FusionBench.Run(args.Skip(1).ToArray());
        return 0;
    case "bdn":
        BenchmarkSwitcher.FromAssembly(typeof(GemmBenchmarks).Assembly).Run(args.Skip(1).ToArray());
        return 0;
    default:
        Console.Error.WriteLine("usage: VitSharp.Bench gemm [--quick] [--paths managed,openblas,naive,managed-1t,managed-1t-cold] [--shapes 197x2304x768t,2048x2048x2048] | gemm-tune | gemm-direct [--shapes ...] | attention [--rounds N] [--shapes BxNxHxD,...] [--no-prefetch] | train-step [--model P] [--batch N] [--steps N] | pth-load [--model vit_b_16] [--rounds N] | lowp [--quick] [--parts] | fusion [--model P] [--batch N] [--steps N] [--precision P] [--gemm B] | bdn [BenchmarkDotNet args]");
        return 2;
}
