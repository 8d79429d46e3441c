// The studio page: every action is one request to the public API, the same a curl command sends.
"use strict";

const $ = (id) => document.getElementById(id);
// Fields the form does not show: the page fills them itself (model, inputs, format...).
const HIDDEN_FIELDS = new Set(["model", "primer", "inputs", "format", "json_style", "seed_sequence", "sample_rate", "stream"]);
const INTERPOLATION_POINTS = 7;
const KEYBOARD = { low: 60, high: 83 };  // C4 to B5
const studio = { models: [], info: null, body: null, result: null, slots: { a: null, b: null }, interp: null, phrase: [] };
window.studio = studio;  // for a look from the browser console (and the tests)

function authHeaders(extra) {
  const headers = { "Content-Type": "application/json", ...extra };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.error = error;
  }
}

async function call(path, body, accept) {
  const init = body === undefined
    ? { headers: authHeaders() }
    : { method: "POST", headers: authHeaders(accept ? { Accept: accept } : {}), body: JSON.stringify(body) };
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let error = { code: `http_${resp.status}`, message: resp.statusText, details: {} };
    try { error = (await resp.json()).error || error; } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(resp.status, error);
  }
  return resp;
}

function showError(err) {
  const box = $("error");
  if (err instanceof ApiError) {
    const { code, message, details } = err.error;
    box.textContent = `${err.status} ${code}: ${message}` + (details && details.fix ? `\nfix: ${details.fix}` : "");
  } else {
    box.textContent = String(err && err.message ? err.message : err);
  }
  box.hidden = false;
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; }

async function guarded(button, work) {
  clearError();
  button.disabled = true;
  $("busy").hidden = false;
  try { await work(); } catch (err) { showError(err); } finally { button.disabled = false; $("busy").hidden = true; }
}

// -- models and the form ------------------------------------------------------------------------
function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.appendChild(o);
  return o;
}

async function loadModels() {
  const data = await (await call("/v1/models")).json();
  studio.models = data.models;
  const pick = $("model"), interp = $("interp-model"), respond = $("call-model");
  for (const m of data.models) {
    const o = option(pick, m.id, `${m.id} (${m.state || "no checkpoint"})`);
    o.title = m.description;
    if (m.id === data.default_model) o.selected = true;
    if (m.capabilities.includes("interpolate")) option(interp, m.id, m.id);
    if (m.capabilities.includes("continue")) option(respond, m.id, m.id);
  }
  for (const select of [interp, respond]) {  // the default, else an embedded model: always ready
    const ready = [...select.options].find((o) => o.value === data.default_model) ||
      [...select.options].find((o) => o.value.startsWith("embedded-"));
    if (ready) ready.selected = true;
  }
  await selectModel();
}

function fieldsOf(schema) {
  const props = {};
  for (const part of schema.allOf || [schema]) Object.assign(props, part.properties || {});
  return props;
}

function kindOf(name, prop) {
  if (name === "seed") return "integer";  // one integer here; a list of them with curl
  if (prop.enum) return "enum";
  const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
  return ["number", "integer", "boolean", "string"].includes(type) ? type : "json";
}

async function selectModel() {
  const info = await (await call(`/v1/models/${encodeURIComponent($("model").value)}`)).json();
  studio.info = info;
  $("model-info").textContent = `${info.description} — family ${info.family}, state ${info.state || "no checkpoint"}` +
    (info.error ? ` — ${info.error}` : "");
  const form = $("params");
  form.replaceChildren();
  const modes = document.createElement("select");
  modes.name = "mode";
  modes.dataset.kind = "string";
  for (const mode of info.capabilities) option(modes, mode, mode).selected = mode === info.default_mode;
  form.appendChild(labelled("mode", modes, "what to do"));
  for (const [name, prop] of Object.entries(fieldsOf(info.parameters || {}))) {
    if (HIDDEN_FIELDS.has(name) || name === "mode") continue;
    form.appendChild(labelled(name, inputFor(name, prop, info.defaults[name]), prop.description || ""));
  }
}

function labelled(name, input, help) {
  const label = document.createElement("label");
  label.textContent = name;
  label.title = help;
  label.appendChild(input);
  return label;
}

function inputFor(name, prop, value) {
  const kind = kindOf(name, prop);
  let input;
  if (kind === "enum") {
    input = document.createElement("select");
    option(input, "", "(default)");
    for (const v of prop.enum) option(input, JSON.stringify(v), String(v)).selected = v === value;
  } else {
    input = document.createElement("input");
    input.type = kind === "boolean" ? "checkbox" : kind === "number" || kind === "integer" ? "number" : "text";
    if (kind === "integer") input.step = "1";
    if (kind === "number") input.step = "any";
    if (prop.minimum !== undefined) input.min = prop.minimum;
    if (prop.maximum !== undefined) input.max = prop.maximum;
    if (kind === "boolean") input.checked = value === true;
    else if (value !== undefined && value !== null) input.value = kind === "json" ? JSON.stringify(value) : value;
    input.placeholder = kind === "json" ? "JSON" : "";
  }
  input.name = name;
  input.dataset.kind = kind;
  input.dataset.initial = kind === "boolean" ? String(input.checked) : input.value;
  return input;
}

function readForm() {
  const body = { model: studio.info.id };
  for (const input of $("params").querySelectorAll("[name]")) {
    const { kind } = input.dataset;
    const raw = kind === "boolean" ? String(input.checked) : input.value.trim();
    if (raw === "" || (input.name !== "mode" && raw === input.dataset.initial && input.name !== "seed")) continue;
    if (kind === "number" || kind === "integer") body[input.name] = Number(raw);
    else if (kind === "boolean") body[input.name] = input.checked;
    else if (kind === "enum") body[input.name] = JSON.parse(raw);
    else if (kind === "json") {
      try { body[input.name] = JSON.parse(raw); } catch (_) { throw new Error(`${input.name}: not JSON: ${raw}`); }
    } else body[input.name] = raw;
  }
  return body;
}

// -- results ------------------------------------------------------------------------------------
async function generate(body) {
  const result = await (await call("/v1/generate", { ...body, json_style: "magentajs" })).json();
  studio.body = { ...body, seed: result.seed };
  show(result, result.sequences[0]);
  return result;
}

function show(result, sequence) {
  studio.result = result;
  $("result").hidden = false;
  const notes = sequence ? sequence.notes.length : 0;
  $("result-info").textContent = `${result.model} ${result.mode}: ${result.sequences.length} sequence(s), ` +
    `${notes} notes, seed ${result.seed}`;
  if (sequence) {
    $("player").noteSequence = sequence;
    $("roll").noteSequence = sequence;
  }
  $("curl").textContent = curlCommand(studio.body);
}

function curlCommand(body) {
  const key = $("api-key").value.trim() ? ` -H "Authorization: Bearer $MAGENTA_API_KEY"` : "";
  const json = JSON.stringify(body).replaceAll("'", "'\\''");
  return `curl -sS ${location.origin}/v1/generate -H 'Content-Type: application/json'${key} -d '${json}'`;
}

const EXTENSIONS = { "audio/midi": "mid", "application/zip": "zip", "audio/wav": "wav", "application/json": "json" };

async function fetchAs(format) {
  const resp = await call("/v1/generate", { ...studio.body, format });
  return resp.blob();
}

async function download(format) {
  const blob = await fetchAs(format);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${studio.body.model}-${studio.body.seed}.${EXTENSIONS[blob.type] || format}`;
  link.dataset.size = String(blob.size);
  link.id = `last-download`;
  link.hidden = true;
  document.getElementById("last-download")?.remove();
  document.body.appendChild(link);
  link.click();
}

async function playWav() {
  const audio = $("wav");
  audio.src = URL.createObjectURL(await fetchAs("wav"));
  audio.hidden = false;
  audio.play().catch(() => { /* no user gesture (autoplay policy): the controls are there */ });
}

async function copyCurl() {
  const text = $("curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-curl").textContent = "Copied";
  } catch (_) {  // no clipboard permission: select the text for Ctrl+C
    const range = document.createRange();
    range.selectNodeContents($("curl"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-curl").textContent = "Selected: press Ctrl+C";
  }
}

// -- interpolation ------------------------------------------------------------------------------
function fillSlot(slot, value, label) {
  studio.slots[slot] = value;
  $(`slot-${slot}`).textContent = label;
}

function readMidiFile(slot, file) {
  const reader = new FileReader();
  reader.onload = () => fillSlot(slot, String(reader.result).split(",")[1], `${file.name} (${file.size} bytes)`);
  reader.readAsDataURL(file);
}

async function interpolate() {
  const { a, b } = studio.slots;
  if (!a || !b) throw new Error("fill both A and B first: “Use as A/B” on a result, or choose two MIDI files");
  const body = {
    model: $("interp-model").value, mode: "interpolate", inputs: [a, b], num_outputs: INTERPOLATION_POINTS, seed: 0,
  };
  const result = await (await call("/v1/generate", { ...body, json_style: "magentajs" })).json();
  studio.body = body;
  studio.interp = result;
  const slider = $("slider");
  slider.max = String(result.sequences.length - 1);
  slider.value = "0";
  slider.disabled = false;
  showPoint();
}

function showPoint() {
  const i = Number($("slider").value);
  const result = studio.interp;
  $("slider-value").textContent = `${i} / ${result.sequences.length - 1}`;
  show(result, result.sequences[i]);
}

// -- call and response --------------------------------------------------------------------------
const held = new Map();
let phraseStart = null;

function noteDown(pitch) {
  const now = performance.now() / 1000;
  if (phraseStart === null) phraseStart = now;
  held.set(pitch, now - phraseStart);
  document.querySelector(`#keyboard [data-pitch="${pitch}"]`)?.classList.add("down");
}

function noteUp(pitch) {
  if (!held.has(pitch)) return;
  const start = held.get(pitch);
  held.delete(pitch);
  const end = Math.max(start + 0.05, performance.now() / 1000 - phraseStart);
  studio.phrase.push({ pitch, velocity: 100, startTime: start, endTime: end });
  document.querySelector(`#keyboard [data-pitch="${pitch}"]`)?.classList.remove("down");
  $("phrase-info").textContent = `${studio.phrase.length} notes`;
}

function buildKeyboard() {
  const board = $("keyboard");
  for (let pitch = KEYBOARD.low; pitch <= KEYBOARD.high; pitch++) {
    const key = document.createElement("div");
    key.className = [1, 3, 6, 8, 10].includes(pitch % 12) ? "key black" : "key";
    key.dataset.pitch = String(pitch);
    key.addEventListener("pointerdown", () => noteDown(pitch));
    key.addEventListener("pointerup", () => noteUp(pitch));
    key.addEventListener("pointerleave", () => noteUp(pitch));
    board.appendChild(key);
  }
  if (navigator.requestMIDIAccess) {
    const use = document.createElement("button");
    use.type = "button";
    use.textContent = "Use a Web MIDI device";
    use.addEventListener("click", () => navigator.requestMIDIAccess().then(listenToMidi, (err) => showError(err)));
    $("midi-in").appendChild(use);
  }
}

function listenToMidi(access) {
  let count = 0;
  for (const input of access.inputs.values()) {
    count++;
    input.onmidimessage = ({ data: [status, pitch, velocity] }) => {
      if ((status & 0xf0) === 0x90 && velocity > 0) noteDown(pitch);
      else if ((status & 0xf0) === 0x80 || (status & 0xf0) === 0x90) noteUp(pitch);
    };
  }
  $("midi-in").textContent = `Web MIDI: ${count} input(s)`;
}

function phraseSequence() {
  const notes = [...studio.phrase].sort((x, y) => x.startTime - y.startTime);
  if (!notes.length) throw new Error("play a few notes on the keyboard first");
  return { notes, totalTime: Math.max(...notes.map((n) => n.endTime)), tempos: [{ time: 0, qpm: 120 }] };
}

async function respond() {
  await generate({ model: $("call-model").value, mode: "continue", primer: phraseSequence() });
}

function clearPhrase() {
  studio.phrase = [];
  phraseStart = null;
  $("phrase-info").textContent = "0 notes";
}

// -- wiring -------------------------------------------------------------------------------------
function on(id, work) {
  $(id).addEventListener("click", () => guarded($(id), work));
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem("magenta-api-key") || "";
  $("api-key").addEventListener("change", () => localStorage.setItem("magenta-api-key", $("api-key").value));
  $("model").addEventListener("change", () => selectModel().catch(showError));
  on("generate", () => generate(readForm()));
  on("download-midi", () => download("midi"));
  on("download-wav", () => download("wav"));
  on("download-json", () => download("json"));
  on("play-wav", playWav);
  on("copy-curl", copyCurl);
  on("use-a", async () => fillSlot("a", studio.result.sequences[0], `result (seed ${studio.result.seed})`));
  on("use-b", async () => fillSlot("b", studio.result.sequences[0], `result (seed ${studio.result.seed})`));
  $("file-a").addEventListener("change", (e) => e.target.files[0] && readMidiFile("a", e.target.files[0]));
  $("file-b").addEventListener("change", (e) => e.target.files[0] && readMidiFile("b", e.target.files[0]));
  on("interpolate-go", interpolate);
  $("slider").addEventListener("input", showPoint);
  on("respond", respond);
  on("clear-phrase", async () => clearPhrase());
  $("roll").config = { noteHeight: 8, pixelsPerTimeStep: 120, noteSpacing: 1 };
  buildKeyboard();
  loadModels().catch(showError);
});
