using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Serving;
using Xunit.Abstractions;

namespace VitSharp.Tests.Serving;

/// <summary>
/// The page at <c>GET /</c> in a real browser: Debian's Chromium, headless, driven through Debian's chromedriver by
/// Selenium (Selenium Manager is never asked to find or download anything). A person's path: open the page, choose an
/// image, read the predicted class, see the bars and the attention overlay; a file that is not an image shows the
/// server's error.
/// </summary>
/// <remarks>
/// Without Chromium this fails under CI (CI=true; scripts/setup.sh installs chromium and chromium-driver) and is
/// reported as skipped, with the reason, elsewhere. <c>VITSHARP_SCREENSHOT=PATH</c> also saves the page's screenshot
/// there (docs/serve.png was made so; <c>VITSHARP_SCREENSHOT_CHECKPOINT</c> and <c>VITSHARP_SCREENSHOT_IMAGE</c> choose
/// another model and image for it).
/// </remarks>
[Trait("Category", "Browser")]
public sealed class ServePageBrowserTests(ServingFixture fx, ITestOutputHelper output) : IClassFixture<ServingFixture>
{
    public const string Chromium = "/usr/bin/chromium", ChromeDriver = "/usr/bin/chromedriver";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>Fails under CI and skips elsewhere when Debian's chromium or chromedriver is missing.</summary>
    internal static void RequireChromium()
    {
        var missing = new[] { Chromium, ChromeDriver }.Where(p => !File.Exists(p)).ToArray();
        if (missing.Length == 0) return;
        string reason = $"{string.Join(" and ", missing)} not installed: apt-get install -y chromium chromium-driver (scripts/setup.sh installs them)";
        string? ci = Environment.GetEnvironmentVariable("CI");
        if (ci is { Length: > 0 } && ci != "0" && !ci.Equals("false", StringComparison.OrdinalIgnoreCase))
            Assert.Fail("CI=true and the browser test cannot run: " + reason);
        Skip.If(true, reason);
    }

    /// <summary>Headless Chromium through the given chromedriver: no Selenium Manager, no download, no network.</summary>
    internal static ChromeDriver StartBrowser()
    {
        // Should Selenium reach for Selenium Manager after all, make it fail loudly instead of downloading.
        Environment.SetEnvironmentVariable("SE_MANAGER_PATH", "/nonexistent/selenium-manager-is-not-used");
        Environment.SetEnvironmentVariable("SE_OFFLINE", "true");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860",
            "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--force-device-scale-factor=1", "--lang=en-US");
        return new ChromeDriver(service, options, Patience);
    }

    /// <summary>Opens the page, chooses <paramref name="image"/>, waits for the answer; returns the class the page shows.</summary>
    internal static string UploadAndRead(IWebDriver driver, Uri address, string image, bool attention)
    {
        driver.Navigate().GoToUrl(address);
        var wait = new WebDriverWait(driver, Patience);
        var js = (IJavaScriptExecutor)driver;
        wait.Until(_ => (string?)js.ExecuteScript("return document.body.dataset.ready") == "true");
        driver.FindElement(By.Id("file")).SendKeys(image);
        wait.Until(_ => js.ExecuteScript("return document.body.dataset.state") is "done" or "error");
        Assert.True((string?)js.ExecuteScript("return document.body.dataset.state") == "done", "the page shows an error: " + driver.FindElement(By.Id("error")).Text);
        if (attention) wait.Until(_ => Convert.ToInt64(js.ExecuteScript("const o = document.getElementById('overlay'); return o.hidden ? 0 : o.naturalWidth")) > 0);
        return driver.FindElement(By.Id("top-class")).Text;
    }

    [SkippableFact]
    public void ChoosingAnImageShowsThePredictedClassItsBarsAndTheAttentionOverlay()
    {
        RequireChromium();
        string photo = ServingAssets.Pretrained("photo.jpg");
        var expected = fx.Vit.Predict(photo, topK: 5);
        using var driver = StartBrowser();
        var js = (IJavaScriptExecutor)driver;

        string shown = UploadAndRead(driver, fx.VitServer.Address, photo, attention: true);
        Assert.Equal(expected.Best.Name, shown);
        Assert.Equal("VitSharp — classify an image", driver.Title);
        Assert.Contains("vit_pytorch.vit.ViT · 10 classes · input 3×32×32", driver.FindElement(By.Id("model")).Text);
        var bars = driver.FindElements(By.CssSelector("ol#bars li"));
        Assert.Equal(expected.Top.Select(t => t.Name), bars.Select(b => b.GetAttribute("data-class")));
        Assert.Equal($"{100 * expected.Best.Probability:0.00}%", bars[0].FindElement(By.CssSelector(".pct")).Text);
        // Each bar is drawn as long as its probability is large, relative to its track (once the short transition ends).
        double[] Drawn() => ((IEnumerable<object>?)js.ExecuteScript(
            "return [...document.querySelectorAll('ol#bars li .fill')].map(b => b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width);") ?? Array.Empty<object>())
            .Select(Convert.ToDouble).ToArray();
        bool Fits(double[] drawn) => drawn.Length == expected.Top.Count
            && drawn.Select((d, i) => Math.Abs(d - Math.Max(0.005, expected.Top[i].Probability))).All(e => e < 0.02);
        try { new WebDriverWait(driver, Patience).Until(_ => Fits(Drawn())); }
        catch (WebDriverTimeoutException) { }
        var lengths = Drawn();
        Assert.True(Fits(lengths), $"bars drawn at {string.Join(", ", lengths.Select(d => d.ToString("0.000")))} of their tracks for probabilities {string.Join(", ", expected.Top.Select(t => t.Probability.ToString("0.000")))}");
        Assert.True(driver.FindElement(By.Id("preview")).Displayed);
        Assert.True(driver.FindElement(By.Id("overlay")).Displayed);
        Assert.Equal(500L, Convert.ToInt64(js.ExecuteScript("return document.getElementById('overlay').naturalWidth")));   // the photo's own size
        Assert.Contains("photo.jpg: " + expected.Best.Name, driver.FindElement(By.Id("status")).Text);

        // A screenshot of the page as a person sees it.
        var shot = ((ITakesScreenshot)driver).GetScreenshot();
        var png = ImageDecoder.Decode(shot.AsByteArray, "screenshot");
        Assert.Equal(1280, png.Width);
        output.WriteLine($"screenshot {png.Width}×{png.Height}");

        // A file that is not an image: the server's one-line error on the page, the answer cleared.
        string text = fx.Assets.File("notes.png");
        File.WriteAllText(text, "not an image");
        driver.FindElement(By.Id("file")).SendKeys(text);
        new WebDriverWait(driver, Patience).Until(_ => (string?)js.ExecuteScript("return document.body.dataset.state") == "error");
        var error = driver.FindElement(By.Id("error"));
        Assert.True(error.Displayed);
        Assert.Contains("notes.png: not a PNG or JPEG", error.Text);
        Assert.Equal("", driver.FindElement(By.Id("top-class")).Text);

        SaveScreenshotForTheDocs(output);
    }

    [SkippableFact]
    public void OnAModelWithoutAttentionThePageSaysSoAndStillClassifies()
    {
        RequireChromium();
        using var driver = StartBrowser();
        string shown = UploadAndRead(driver, fx.ResNetServer.Address, fx.Assets.PngPath, attention: false);
        Assert.Equal(ImageClassifier.Load(fx.Assets.ResNetCheckpoint).Predict(fx.Assets.PngPath).Best.Name, shown);
        Assert.False(driver.FindElement(By.Id("overlay")).Displayed);
        Assert.Equal("This model has no attention maps.", driver.FindElement(By.Id("overlay-empty")).Text);
    }

    /// <summary>With VITSHARP_SCREENSHOT set: the page after classifying an image, saved as PNG for docs/serve.md.</summary>
    private void SaveScreenshotForTheDocs(ITestOutputHelper log)
    {
        if (Environment.GetEnvironmentVariable("VITSHARP_SCREENSHOT") is not { Length: > 0 } target) return;
        string checkpoint = Environment.GetEnvironmentVariable("VITSHARP_SCREENSHOT_CHECKPOINT") is { Length: > 0 } c ? c : fx.Assets.VitCheckpoint;
        string image = Environment.GetEnvironmentVariable("VITSHARP_SCREENSHOT_IMAGE") is { Length: > 0 } i ? i : ServingAssets.Pretrained("photo.jpg");
        var classifier = ImageClassifier.Load(checkpoint);
        var server = ClassifierServer.StartAsync(classifier, new ClassifierServerOptions { Port = 0 }).GetAwaiter().GetResult();
        try
        {
            using var driver = StartBrowser();
            string shown = UploadAndRead(driver, server.Address, image, attention: classifier.SupportsAttention);
            Assert.Equal(classifier.Predict(image).Best.Name, shown);
            Thread.Sleep(500);   // let the bars' transition finish
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(target);
            log.WriteLine($"saved {target}: {checkpoint}, {image} → {shown}");
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
