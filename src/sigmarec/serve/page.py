"""The web page ``sigmarec serve`` shows at ``/``: pick a user or type a history, see it and the top-K (with item
names where the data set has them) and, for models with interests (SIGMA), each interest's intensity and items.
One self-contained HTML file that calls the service's JSON endpoints."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sigmarec</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; color: #222; }
 h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
 .row { display: flex; gap: 2rem; flex-wrap: wrap; } .col { flex: 1; min-width: 18rem; }
 ol { padding-left: 1.5rem; } li { margin: .15rem 0; } .score, .muted { color: #777; font-size: .85em; }
 .bar { display: inline-block; height: .7em; background: #4a7bd0; margin-right: .4em; vertical-align: middle; }
 input, button, select { font: inherit; padding: .2rem .4rem; } #error { color: #b00; }
</style></head>
<body>
<h1>sigmarec <span id="meta" class="muted"></span></h1>
<div>
 <label>user <input id="user" list="users" size="14" placeholder="user id"></label>
 <datalist id="users"></datalist>
 <label>or history <input id="history" size="40" placeholder="item ids, comma-separated, oldest first"></label>
 <label>k <input id="k" type="number" value="10" min="1" max="1000" style="width:4rem"></label>
 <button id="go">recommend</button> <span id="error"></span>
</div>
<div class="row">
 <div class="col"><h2>History</h2><ol id="hist"></ol></div>
 <div class="col"><h2>Recommended</h2><ol id="recs"></ol></div>
 <div class="col" id="interests-col"><h2>Interests</h2><div id="interests" class="muted">pick a user</div></div>
</div>
<script>
const $ = (id) => document.getElementById(id);
const label = (x) => x.name ? `${x.name} <span class="muted">(${x.item})</span>` : x.item;
async function api(path, body) {
  const r = await fetch(path, body ? {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)} : {});
  const data = await r.json();
  if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}
async function names(items) {
  return Promise.all(items.map(async (x) => { try { const i = await api(`/items/${encodeURIComponent(x.item)}`);
    return {...x, name: i.title || i.movie_title || i.name || null}; } catch (e) { return x; } }));
}
async function go() {
  $("error").textContent = ""; $("hist").innerHTML = ""; $("recs").innerHTML = "";
  const user = $("user").value.trim(), k = parseInt($("k").value || "10");
  const history = $("history").value.split(",").map((s) => s.trim()).filter((s) => s);
  try {
    const req = user ? {user, k} : {history, k, unknown_items: "skip"};
    const [recs, hist] = await Promise.all([api("/recommend", req),
      user ? api(`/users/${encodeURIComponent(user)}`).then((u) => u.history) : Promise.resolve(history.map((item) => ({item})))]);
    $("hist").innerHTML = hist.map((x) => `<li>${label(x)}</li>`).join("");
    const named = await names(recs.items);
    $("recs").innerHTML = named.map((x) => `<li class="rec" data-item="${x.item}">${label(x)} <span class="score">${x.score.toFixed(3)}</span></li>`).join("");
    if (recs.skipped && recs.skipped.length) $("error").textContent = `unknown ids skipped: ${recs.skipped.join(", ")}`;
    if (user) {
      const info = await api(`/users/${encodeURIComponent(user)}/interests`);
      $("interests").innerHTML = info.interests ? info.interests.map((it) =>
        `<div><span class="bar" style="width:${Math.round(120 * it.intensity)}px"></span>${(100 * it.intensity).toFixed(1)}%: ` +
        it.items.map(label).join(", ") + `</div>`).join("") : info.reason;
    } else { $("interests").textContent = "interests are shown for a known user"; }
  } catch (e) { $("error").textContent = e.message; }
}
$("go").addEventListener("click", go);
$("user").addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
api("/metadata").then((m) => { $("meta").textContent = `${m.model} on ${m.data}: ${m.items} items, ${m.users} users, ${m.scoring}`; });
api("/users?limit=200").then((u) => { $("users").innerHTML = u.users.map((x) => `<option value="${x}">`).join(""); });
</script>
</body></html>
"""
