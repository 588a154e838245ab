// A small live chart of training: loss (left axis) and accuracy (right axis, 0–100 %) per epoch,
// drawn on a canvas at the screen's pixel density.

const LOSS = '#d9467a';
const ACC = '#2f7d5b';

// The loss axis's ticks for losses up to `top`: 0 and round steps of 1, 2 or 5 × 10^n (0, 0.5, 1,
// 1.5, 2), the smallest step that covers `top` in at most 5 intervals, and at least 4 intervals, so
// the accuracy axis (0–100 %) that shares the grid lines gets round steps too (25 % or 20 %).
export function lossTicks(top) {
  const t = Number.isFinite(top) && top > 0 ? top : 1;
  const p = 10 ** Math.floor(Math.log10(t / 5));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => t / s <= 5 + 1e-9);
  const intervals = Math.max(4, Math.ceil(t / step - 1e-9));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return Array.from({ length: intervals + 1 }, (_, i) => Number((i * step).toFixed(decimals)));
}

export function drawChart(canvas, history, epochs) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 300, cssH = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);

  const pad = { l: 38, r: 40, t: 22, b: 24 };
  const w = cssW - pad.l - pad.r, h = cssH - pad.t - pad.b;
  const n = Math.max(epochs || 0, history.length, 2);
  const top = Math.max(0.1, ...history.map((s) => s.loss).filter(Number.isFinite));
  const ticks = lossTicks(top);
  const maxLoss = ticks[ticks.length - 1];
  const k = ticks.length - 1;
  const x = (e) => pad.l + ((e - 1) / (n - 1)) * w;
  const yLoss = (v) => pad.t + h - (v / maxLoss) * h;
  const yAcc = (v) => pad.t + h - v * h;

  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = '#e4e0e6';
  ctx.fillStyle = '#6b6470';
  for (let i = 0; i <= k; i++) {
    const yy = pad.t + (h * i) / k;
    ctx.beginPath();
    ctx.moveTo(pad.l, yy);
    ctx.lineTo(pad.l + w, yy);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(String(ticks[k - i]), pad.l - 4, yy + 4);
    ctx.textAlign = 'left';
    ctx.fillText(`${100 - (100 / k) * i}%`, pad.l + w + 4, yy + 4);
  }
  ctx.textAlign = 'center';
  ctx.fillText('epoch', pad.l + w / 2, cssH - 6);
  ctx.fillText('1', x(1), cssH - 6);
  ctx.fillText(String(n), x(n), cssH - 6);

  const line = (color, y, key) => {
    if (!history.length) return;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    history.forEach((s, i) => (i ? ctx.lineTo(x(s.epoch), y(s[key])) : ctx.moveTo(x(s.epoch), y(s[key]))));
    ctx.stroke();
    const last = history[history.length - 1];
    ctx.beginPath();
    ctx.arc(x(last.epoch), y(last[key]), 3, 0, 2 * Math.PI);
    ctx.fill();
  };
  line(LOSS, yLoss, 'loss');
  line(ACC, yAcc, 'accuracy');

  ctx.textAlign = 'left';
  const last = history[history.length - 1];
  ctx.fillStyle = LOSS;
  ctx.fillText(`■ loss${last ? ` ${last.loss.toFixed(3)}` : ''}`, pad.l, 13);
  ctx.fillStyle = ACC;
  ctx.fillText(`■ training accuracy${last ? ` ${(100 * last.accuracy).toFixed(1)}%` : ''}`, pad.l + 100, 13);
}
