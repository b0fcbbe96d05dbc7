using System.Diagnostics.Metrics;
using System.Globalization;

namespace TokenRefresh.Cli;

/// <summary>`--metrics`: listens to the service's meter and prints what it recorded after each cycle.</summary>
internal sealed class MetricsPrinter : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, (string Unit, bool Histogram, long Count, double Sum, double Max)> _series = new(StringComparer.Ordinal);

    public MetricsPrinter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == TokenRefreshMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.Start();
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var tagText = string.Join(' ', tags.ToArray().OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}"));
        var key = $"{instrument.Name}\t{tagText}";
        var histogram = instrument is Histogram<double>;
        var gauge = instrument is Gauge<long>;
        lock (_lock)
        {
            var (_, _, count, sum, max) = _series.GetValueOrDefault(key);
            _series[key] = gauge
                ? (instrument.Unit ?? "", false, 1, value, value)
                : (instrument.Unit ?? "", histogram, count + 1, sum + value, Math.Max(max, value));
        }
    }

    public void Print(TextWriter output)
    {
        lock (_lock)
        {
            output.WriteLine("Metrics (meter TokenRefresh, since start):");
            foreach (var (key, s) in _series)
            {
                var (name, tags) = (key.Split('\t')[0], key.Split('\t')[1]);
                var value = s.Histogram
                    ? string.Create(CultureInfo.InvariantCulture, $"count {s.Count}, mean {s.Sum / s.Count:0.###} {s.Unit}, max {s.Max:0.###} {s.Unit}")
                    : string.Create(CultureInfo.InvariantCulture, $"{s.Sum:0.###}");
                output.WriteLine($"  {name,-40} {tags,-60} {value}");
            }
        }
    }

    public void Dispose() => _listener.Dispose();
}
