"""The browser half of the drawable piano roll: an anywidget ES module and its CSS (no build step).

Kept apart from :mod:`musicvae_course.ui.rolldraw` because it is JavaScript, not Python. The canvas shows rows
``high`` (top) ... ``low`` (bottom), ``steps`` columns, bar lines at the steps of ``bar_lines`` and beat lines at
those of ``beat_lines`` (by default the model's window, 2 bars of 4/4; for an uploaded piece, its own meter). A
press toggles the cell under the pointer; dragging paints (or erases, if the press erased) every cell it crosses,
the line between two pointer events included; the change is sent to Python once, when the button is released.
Cells of ``overlay`` (the model's reconstruction) are outlined in orange, so the drawing and the model's answer
can be compared on one grid.
"""

ESM = r"""
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const LABEL_PX = 34;

function render({ model, el }) {
  el.classList.add("mvc-draw-roll");
  const canvas = document.createElement("canvas");
  canvas.classList.add("mvc-draw-canvas");
  canvas.style.touchAction = "none";
  canvas.style.cursor = "crosshair";
  el.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  let cells = new Set(model.get("cells"));
  let painting = null;  // null, or true (painting on) / false (erasing) while the button is down

  function geometry() {
    const low = model.get("low"), high = model.get("high"), steps = model.get("steps");
    const px = model.get("cell_px");
    return { low, high, steps, px, rows: high - low + 1 };
  }

  function draw() {
    const g = geometry();
    canvas.width = LABEL_PX + g.steps * g.px + 1;
    canvas.height = g.rows * g.px + 1;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    for (let r = 0; r < g.rows; r++) {
      const pitch = g.high - r, y = r * g.px;
      const black = [1, 3, 6, 8, 10].includes(pitch % 12);
      ctx.fillStyle = black ? "#f0f0f0" : "#ffffff";
      ctx.fillRect(LABEL_PX, y, g.steps * g.px, g.px);
      ctx.fillStyle = pitch % 12 === 0 ? "#000000" : "#777777";
      ctx.fillText(NAMES[pitch % 12] + (Math.floor(pitch / 12) - 1), 2, y + g.px / 2);
    }
    const bars = new Set(model.get("bar_lines")), beats = new Set(model.get("beat_lines"));
    for (let s = 0; s <= g.steps; s++) {
      ctx.strokeStyle = bars.has(s) ? "#444444" : beats.has(s) ? "#aaaaaa" : "#e4e4e4";
      ctx.lineWidth = bars.has(s) ? 1.5 : 1;
      ctx.beginPath();
      ctx.moveTo(LABEL_PX + s * g.px + 0.5, 0);
      ctx.lineTo(LABEL_PX + s * g.px + 0.5, g.rows * g.px);
      ctx.stroke();
    }
    ctx.fillStyle = "#222222";
    for (const index of cells) {
      const row = Math.floor(index / g.steps), step = index % g.steps;
      ctx.fillRect(LABEL_PX + step * g.px + 1, row * g.px + 1, g.px - 1, g.px - 1);
    }
    ctx.strokeStyle = "#D55E00";
    ctx.lineWidth = 2;
    for (const index of model.get("overlay")) {
      const row = Math.floor(index / g.steps), step = index % g.steps;
      ctx.strokeRect(LABEL_PX + step * g.px + 2, row * g.px + 2, g.px - 3, g.px - 3);
    }
  }

  function cellAt(event) {
    const g = geometry();
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * (canvas.width / box.width) - LABEL_PX;
    const y = (event.clientY - box.top) * (canvas.height / box.height);
    const step = Math.floor(x / g.px), row = Math.floor(y / g.px);
    if (step < 0 || step >= g.steps || row < 0 || row >= g.rows) return null;
    return row * g.steps + step;
  }

  let last = null;  // the cell the pointer was over at the previous event, while painting

  function apply(index) {
    if (index === null) return;
    const steps = geometry().steps;
    // A fast drag skips cells between two pointer events: paint the straight line between them.
    const from = last === null ? index : last;
    const r0 = Math.floor(from / steps), s0 = from % steps, r1 = Math.floor(index / steps), s1 = index % steps;
    const n = Math.max(Math.abs(r1 - r0), Math.abs(s1 - s0));
    for (let i = 0; i <= n; i++) {
      const t = n === 0 ? 0 : i / n;
      const cell = Math.round(r0 + t * (r1 - r0)) * steps + Math.round(s0 + t * (s1 - s0));
      if (painting) cells.add(cell); else cells.delete(cell);
    }
    last = index;
    draw();
  }

  canvas.addEventListener("pointerdown", (event) => {
    const index = cellAt(event);
    if (index === null) return;
    painting = !cells.has(index);
    last = null;
    canvas.setPointerCapture(event.pointerId);
    apply(index);
  });
  canvas.addEventListener("pointermove", (event) => { if (painting !== null) apply(cellAt(event)); });
  const finish = () => {
    if (painting === null) return;
    painting = null;
    last = null;
    model.set("cells", Array.from(cells).sort((a, b) => a - b));
    model.save_changes();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  const reload = () => { cells = new Set(model.get("cells")); draw(); };
  model.on("change:cells", reload);
  model.on("change:overlay", draw);
  model.on("change:low", draw);
  model.on("change:high", draw);
  model.on("change:bar_lines", draw);
  model.on("change:beat_lines", draw);
  draw();
}
export default { render };
"""

CSS = """
.mvc-draw-roll canvas { border: 1px solid #cccccc; max-width: 100%; }
"""
