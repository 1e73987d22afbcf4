// The dashboard's one script (served as a file: the CSP allows no inline script).
// Every data-refresh seconds, each chart on the page is fetched again from the edge
// (GET /dashboard/chart/<socket>) and swapped in, so the rates move without a reload.
"use strict";
(function () {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds) { return; }
  async function refresh() {
    for (const fig of document.querySelectorAll("figure[data-chart]")) {
      const url = "/dashboard/chart/" + encodeURIComponent(fig.dataset.chart) +
                  "?size=" + encodeURIComponent(fig.dataset.size);
      try {
        const resp = await fetch(url, {credentials: "same-origin", cache: "no-store"});
        if (!resp.ok) { continue; }
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.querySelector("figure[data-chart]");
        if (fresh) { fig.replaceWith(document.importNode(fresh, true)); }
      } catch (e) { /* the next round tries again */ }
    }
  }
  setInterval(refresh, Math.max(1, seconds) * 1000);
})();
