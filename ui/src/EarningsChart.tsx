import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef } from "preact/hooks";
import { formatMyst } from "./api";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

/**
 * Earnings per day as bars (Chart.js on a canvas), with the same numbers in a table for screen
 * readers and keyboard users: a canvas alone says nothing to them.
 */
export function EarningsChart(props: { daily: { date: string; earnedWei: string }[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  const labels = props.daily.map((d) => d.date.slice(5));
  const values = props.daily.map((d) => Number(formatMyst(d.earnedWei, 6)));
  useEffect(() => {
    if (!canvas.current) return;
    chart.current = new Chart(canvas.current, {
      type: "bar",
      data: { labels: [], datasets: [{ label: "MYST earned", data: [], backgroundColor: "#4a6cf7" }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
    });
    return () => chart.current?.destroy();
  }, []);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = labels;
    c.data.datasets[0].data = values;
    c.update();
  }, [labels.join(), values.join()]);
  return (
    <figure class="chart">
      <div class="chart-box">
        <canvas ref={canvas} role="img" aria-label="Earnings per day, MYST (the table below has the numbers)" />
      </div>
      <figcaption>Earnings per day (a session over midnight counts on both days)</figcaption>
      <table class="visually-hidden" aria-label="Earnings per day">
        <thead>
          <tr>
            <th scope="col">Day</th>
            <th scope="col">MYST</th>
          </tr>
        </thead>
        <tbody>
          {props.daily.map((d) => (
            <tr key={d.date} data-date={d.date}>
              <td>{d.date}</td>
              <td>{formatMyst(d.earnedWei, 18)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
