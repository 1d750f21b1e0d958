"""The web page `anybind serve` answers at `/`: one self-contained HTML file (no network)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anybind search</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; }
 form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
 input[type=text] { flex: 1; min-width: 20rem; padding: .4rem; }
 section { margin-top: 1.5rem; }
 .hits { display: flex; flex-wrap: wrap; gap: .75rem; }
 .hit { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; width: 12rem; }
 .hit img { max-width: 100%; image-rendering: pixelated; }
 .hit audio { width: 100%; }
 .score { color: #555; font-size: .85rem; }
 #error { color: #b00; }
</style>
</head>
<body>
<h1>anybind search</h1>
<form id="query">
  <input type="text" id="text" name="text" placeholder="a sentence, e.g. a picture of seven">
  <input type="file" id="file" name="file">
  <label>k <input type="number" id="k" value="8" min="1" max="100" style="width:4rem"></label>
  <input type="password" id="key" placeholder="API key (if the server needs one)">
  <button type="submit" id="go">Search</button>
</form>
<p id="error"></p>
<div id="results"></div>
<script>
const $ = (id) => document.getElementById(id);
function headers() {
  const key = $("key").value;
  return key ? {"Authorization": "Bearer " + key} : {};
}
function card(modality, hit) {
  const div = document.createElement("div");
  div.className = "hit";
  div.dataset.modality = modality;
  if (hit.url && modality.includes("image")) {
    const img = document.createElement("img"); img.src = hit.url; img.alt = hit.id; div.append(img);
  } else if (hit.url && modality.includes("audio")) {
    const audio = document.createElement("audio"); audio.controls = true; audio.src = hit.url;
    div.append(audio);
  }
  const name = document.createElement("div");
  name.textContent = (hit.class ? hit.class + " · " : "") + hit.id;
  const score = document.createElement("div");
  score.className = "score"; score.textContent = "score " + hit.score.toFixed(4);
  div.append(name, score);
  return div;
}
function show(data) {
  const out = $("results"); out.replaceChildren();
  for (const result of data.results) {
    for (const [modality, hits] of Object.entries(result.results)) {
      const section = document.createElement("section");
      section.dataset.modality = modality;
      const title = document.createElement("h2");
      title.textContent = modality + " nearest to “" + result.query + "”";
      const grid = document.createElement("div"); grid.className = "hits";
      hits.forEach((h) => grid.append(card(modality, h)));
      section.append(title, grid); out.append(section);
    }
  }
}
$("query").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  const k = Number($("k").value) || 8;
  let response;
  if ($("file").files.length) {
    const form = new FormData(); form.append("file", $("file").files[0]); form.append("k", k);
    response = await fetch("/search", {method: "POST", body: form, headers: headers()});
  } else {
    response = await fetch("/search", {method: "POST", headers: {...headers(),
      "Content-Type": "application/json"}, body: JSON.stringify({text: $("text").value, k})});
  }
  const data = await response.json();
  if (!response.ok) { $("error").textContent = data.detail; return; }
  show(data);
});
</script>
</body>
</html>
"""
