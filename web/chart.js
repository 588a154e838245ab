// A small live chart of training: loss (left axis) and accuracy (right axis, 0–100 %) per epoch,
// drawn on a canvas at the screen's pixel density.

const LOSS = '#d9467a';
const ACC = '#2f7d5b';

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
  const top = Math.max(0.1, ...history.map((s) => s.loss));
  const maxLoss = [0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 25, 50, 100].find((v) => v >= top) || top;
  const x = (e) => pad.l + ((e - 1) / (n - 1)) * w;
  const yLoss = (v) => pad.t + h - (v / maxLoss) * h;
  const yAcc = (v) => pad.t + h - v * h;

  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = '#e4e0e6';
  ctx.fillStyle = '#6b6470';
  for (let i = 0; i <= 4; i++) {
    const yy = pad.t + (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, yy);
    ctx.lineTo(pad.l + w, yy);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText((maxLoss * (1 - i / 4)).toFixed(2), pad.l - 4, yy + 4);
    ctx.textAlign = 'left';
    ctx.fillText(`${100 - 25 * i}%`, pad.l + w + 4, yy + 4);
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
  ctx.fillText(`■ accuracy${last ? ` ${(100 * last.accuracy).toFixed(1)}%` : ''}`, pad.l + 100, 13);
}
