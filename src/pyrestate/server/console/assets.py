"""The console's one stylesheet and one script, served from `/ui/static/` so that the Content-Security-Policy
can forbid every inline script and style."""

from __future__ import annotations

CSS = """
:root{--fg:#1d1d24;--muted:#555a66;--line:#c9ccd6;--head:#1f2433;--link:#0b4fb3}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:var(--fg);background:#fff}
a{color:var(--link)}a:focus,button:focus,input:focus,select:focus,textarea:focus,summary:focus{
outline:3px solid #f0b400;outline-offset:1px}
.skip{position:absolute;left:-999px}.skip:focus{left:1em;top:.5em;background:#fff;padding:.3em;z-index:2}
header{background:var(--head);padding:.5em 1em}header a{color:#fff;margin-right:1.2em;text-decoration:none}
header a[aria-current]{text-decoration:underline;font-weight:600}
main{padding:1em 1.5em;max-width:110em}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.15em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.5em 0;width:100%}
th,td{border:1px solid var(--line);padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eef0f5}.mono,code,pre,textarea{font-family:ui-monospace,monospace;font-size:13px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;max-height:24em;overflow:auto}
.flash{background:#e6f4e6;border:1px solid #3c7a3c;padding:.5em}
.error{background:#fbe9e9;border:1px solid #a33;padding:.5em}
form.inline{display:inline}textarea{width:100%;box-sizing:border-box}
.filters{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:end;margin-bottom:.6em}
.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
.st{display:inline-block;border-radius:3px;padding:0 .45em;font-size:12px;font-weight:600;border:1px solid}
.st-running{background:#e3f1ff;color:#0a3f80;border-color:#0a3f80}
.st-backing-off{background:#fff1d6;color:#7a4200;border-color:#7a4200}
.st-paused{background:#f3e6ff;color:#5a1d8c;border-color:#5a1d8c}
.st-suspended{background:#e6f6f6;color:#0d5656;border-color:#0d5656}
.st-scheduled,.st-pending,.st-ready{background:#eef0f5;color:#333a4d;border-color:#333a4d}
.st-success{background:#e3f4e3;color:#1d5c1d;border-color:#1d5c1d}
.st-failure{background:#fbe3e3;color:#8a1414;border-color:#8a1414}
.counts a{margin-right:.6em;text-decoration:none}.muted{color:var(--muted)}
.pager a{margin-right:1em}.actions form{margin-right:.4em}
button.danger{background:#8a1414;color:#fff;border:1px solid #5e0d0d;border-radius:3px;padding:.2em .7em}
button{padding:.2em .7em}meter{width:14em}
.layout{display:flex;gap:1.5em}.layout>aside{flex:0 0 18em;font-size:13px}.layout>section{flex:1;min-width:0}
aside details{margin-bottom:.3em}aside ul{margin:.2em 0 .2em 1.2em;padding:0}
"""

# Live refresh: re-fetches the page it is on (same URL, so the same filters and page of rows) and swaps only
# the regions marked `data-live`, leaving the scroll position and whatever the user is typing alone.
# Confirmation: forms marked `data-confirm` ask before they submit.
JS = """
(function () {
  document.addEventListener('submit', function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) { ev.preventDefault(); }
  });
  var box = document.getElementById('live');
  if (!box) { return; }
  var timer = null;
  function refresh() {
    fetch(window.location.href, {credentials: 'same-origin', headers: {'accept': 'text/html'}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, 'text/html');
        document.querySelectorAll('[data-live]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceWith(document.importNode(fresh, true)); }
        });
        var stamp = document.getElementById('refreshed');
        if (stamp) { stamp.textContent = 'updated ' + new Date().toLocaleTimeString(); }
      })
      .catch(function () {});
  }
  function apply() {
    if (timer) { clearInterval(timer); timer = null; }
    if (box.checked) { timer = setInterval(refresh, 3000); }
    var url = new URL(window.location.href);
    if (box.checked) { url.searchParams.set('live', '1'); } else { url.searchParams.delete('live'); }
    history.replaceState(null, '', url.toString());
  }
  box.addEventListener('change', apply);
  apply();
})();
"""
