using System.Globalization;
using System.Text;

namespace VitSharp.Training;

/// <summary>Plots of training runs as self-contained SVG (opens in any browser or image viewer).</summary>
public static class Plot
{
    private const int PanelWidth = 420, PanelHeight = 280, Margin = 48;

    /// <summary>Two panels: loss (train, test) and accuracy (train, test) per epoch.</summary>
    public static string TrainingCurves(IReadOnlyList<EpochMetrics> history)
    {
        var sb = new StringBuilder();
        int width = 2 * PanelWidth + 3 * Margin, height = PanelHeight + 2 * Margin + 20;
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        var epochs = history.Select(h => (double)h.Epoch).ToArray();
        Panel(sb, Margin, Margin, "loss", epochs,
            [("train", "#1f77b4", history.Select(h => h.TrainLoss).ToArray()), ("test", "#d62728", history.Select(h => h.TestLoss).ToArray())]);
        Panel(sb, 2 * Margin + PanelWidth, Margin, "accuracy (%)", epochs,
            [("train", "#1f77b4", history.Select(h => 100 * h.TrainAccuracy).ToArray()), ("test", "#d62728", history.Select(h => 100 * h.TestAccuracy).ToArray())]);
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static void Panel(StringBuilder sb, int x0, int y0, string title, double[] xs, (string Name, string Color, double[] Ys)[] series)
    {
        var all = series.SelectMany(s => s.Ys).Where(double.IsFinite).ToArray();
        double yMin = all.Length > 0 ? all.Min() : 0, yMax = all.Length > 0 ? all.Max() : 1;
        if (yMax - yMin < 1e-9) { yMin -= 0.5; yMax += 0.5; }
        double pad = (yMax - yMin) * 0.05; yMin -= pad; yMax += pad;
        double xMin = xs.Length > 0 ? Math.Min(0, xs.Min()) : 0, xMax = xs.Length > 0 ? Math.Max(xs.Max(), 1) : 1;
        string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);
        double X(double x) => x0 + (x - xMin) / (xMax - xMin) * PanelWidth;
        double Y(double y) => y0 + PanelHeight - (y - yMin) / (yMax - yMin) * PanelHeight;
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{x0 + PanelWidth / 2}\" y=\"{y0 - 12}\" text-anchor=\"middle\" font-weight=\"bold\">{title}</text>\n");
        sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x0}\" y=\"{y0}\" width=\"{PanelWidth}\" height=\"{PanelHeight}\" fill=\"none\" stroke=\"#888\"/>\n");
        for (int i = 0; i <= 4; i++)
        {
            double v = yMin + (yMax - yMin) * i / 4;
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{x0}\" x2=\"{x0 + PanelWidth}\" y1=\"{F(Y(v))}\" y2=\"{F(Y(v))}\" stroke=\"#eee\"/>");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{x0 - 4}\" y=\"{F(Y(v) + 4)}\" text-anchor=\"end\">{v.ToString(Math.Abs(yMax - yMin) < 1 ? "0.000" : "0.0", CultureInfo.InvariantCulture)}</text>\n");
        }
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{x0 + PanelWidth / 2}\" y=\"{y0 + PanelHeight + 32}\" text-anchor=\"middle\">epoch</text>\n");
        foreach (var x in xs)
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(X(x))}\" y=\"{y0 + PanelHeight + 16}\" text-anchor=\"middle\">{F(x)}</text>");
        int legend = 0;
        foreach (var (name, color, ys) in series)
        {
            var pts = xs.Zip(ys).Where(p => double.IsFinite(p.Second)).Select(p => $"{F(X(p.First))},{F(Y(p.Second))}").ToArray();
            if (pts.Length > 0)
            {
                sb.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{string.Join(' ', pts)}\"/>\n");
                foreach (var p in pts) { var c = p.Split(','); sb.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{c[0]}\" cy=\"{c[1]}\" r=\"3\" fill=\"{color}\"/>"); }
            }
            sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x0 + 10}\" y=\"{y0 + 10 + legend * 16}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{x0 + 26}\" y=\"{y0 + 15 + legend * 16}\">{name}</text>\n");
            legend++;
        }
    }
}
