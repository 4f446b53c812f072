// Loaded in <head>, before the first paint, so a dark page never flashes light. A file of its own
// rather than an inline script: the page's Content-Security-Policy allows no inline script.
try {
  const t = localStorage.getItem("metrics.theme");
  if (t === "light" || t === "dark") document.documentElement.dataset.theme = t;
} catch (_) {}
