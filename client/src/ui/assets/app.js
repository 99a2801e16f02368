// skiff ui: follows the server's picture of every workspace and renders it; the buttons ask the server, which runs
// the skiff commands. Every value from the server reaches the page as text (textContent), never as markup.
"use strict";

const state = {
  board: null,
  busy: new Map(), // workspace name -> the action running
  logs: null, // the EventSource of the output panel
};

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds >= 86400) return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h`;
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  return `${seconds}s`;
}

function money(usd) {
  return usd === null || usd === undefined ? null : `$${usd.toFixed(2)}`;
}

function clock(unixMs) {
  return new Date(unixMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function idleCell(row) {
  const idle = row.idle;
  if (!idle) return element("td", { className: "idle muted" }, row.state === "running" ? "—" : "");
  const cell = element("td", { className: "idle" });
  if (idle.timeout_seconds === 0) {
    cell.append("idle stop off");
  } else if (idle.busy.length > 0) {
    cell.append(element("span", { className: "busy" }, `kept up by ${idle.busy.join(", ")}`));
  } else if (idle.stops_at_unix_ms !== null) {
    cell.append(element("span", { className: "countdown", "data-stops-at": idle.stops_at_unix_ms }, ""));
  }
  if (idle.pinned_until_unix_ms) {
    cell.append(element("small", { className: "pinned" }, `kept alive until ${clock(idle.pinned_until_unix_ms)}`));
  }
  return cell;
}

function updateCountdowns() {
  const now = Date.now();
  for (const node of document.querySelectorAll(".countdown")) {
    const left = (Number(node.dataset.stopsAt) - now) / 1000;
    node.textContent = left > 0 ? `stops in ${duration(left)}` : "stopping…";
    node.classList.toggle("soon", left < 15 * 60);
  }
  renderSoon(now);
}

function renderSoon(now) {
  const list = $("soon-list");
  list.replaceChildren();
  for (const row of state.board ? state.board.rows : []) {
    const due = row.idle && row.idle.busy.length === 0 ? row.idle.stops_at_unix_ms : null;
    if (due !== null && due - now < 15 * 60 * 1000 && due > now) {
      list.append(element("li", {}, `${row.name} stops in ${duration((due - now) / 1000)}`));
    }
  }
  $("soon").hidden = list.children.length === 0;
}

function button(row, action, label, className) {
  const running = state.busy.get(row.name);
  return element(
    "button",
    {
      type: "button",
      "data-action": action,
      className,
      disabled: running !== undefined,
      onclick: () => act(row, action, label),
    },
    running === action ? `${label}…` : label,
  );
}

function actionsCell(row) {
  const cell = element("td", { className: "actions" });
  const running = row.state === "running";
  if (!running && row.folder) cell.append(button(row, "start", "Start"));
  if (running) {
    cell.append(button(row, "stop", "Stop"));
    cell.append(button(row, "keep-1h", "Keep 1 h"));
    cell.append(button(row, "keep-4h", "Keep 4 h"));
    cell.append(button(row, "code", "Open in VS Code"));
    cell.append(element("button", { type: "button", "data-action": "logs", onclick: () => showLogs(row) }, "Logs"));
  }
  cell.append(
    element("button", { type: "button", "data-action": "copy-ssh", onclick: (event) => copySsh(row, event.target) }, "Copy ssh"),
  );
  if (row.provider === "aws") {
    cell.append(element("button", { type: "button", "data-action": "boot-log", onclick: () => showBootLog(row) }, "Boot log"));
  }
  cell.append(button(row, "delete", "Delete", "danger"));
  return cell;
}

function renderRow(row) {
  const stoppedFor =
    row.stopped_since_unix !== null && row.stopped_since_unix !== undefined
      ? element("small", {}, `for ${duration(Date.now() / 1000 - row.stopped_since_unix)}`)
      : null;
  const where = row.provider === "aws" ? `AWS ${row.region ?? ""}` : "this machine";
  const hourly = row.hourly_usd !== null ? `$${row.hourly_usd.toFixed(4)}/hour on demand` : null;
  const cost = [];
  if (row.month_usd !== null) cost.push(element("span", { className: "month-cost" }, `${row.month_usd_at_least ? "at least " : ""}${money(row.month_usd)} this month`));
  if (row.storage_usd_month !== null) cost.push(element("small", {}, `disk ${money(row.storage_usd_month)}/month`));
  if (row.month) cost.push(element("small", {}, row.month));
  const ports = element("td", { className: "ports" });
  for (const port of row.ports) {
    ports.append(element("a", { href: `http://127.0.0.1:${port}/`, target: "_blank", rel: "noopener noreferrer" }, port), " ");
  }
  const last = row.idle
    ? element("td", { className: "last" }, `${duration((Date.now() - row.idle.last_activity_unix_ms) / 1000)} ago`, element("small", {}, row.idle.last_activity))
    : element("td", { className: "last muted" }, "");
  return element(
    "tr",
    { "data-name": row.name, "data-state": row.state, "data-provider": row.provider },
    element("td", { className: "name" }, element("strong", {}, row.name), row.folder ? element("small", {}, row.folder) : null),
    element("td", {}, where),
    element("td", {}, element("span", { className: `state state-${row.state}` }, row.state), stoppedFor),
    idleCell(row),
    element("td", {}, row.machine, hourly ? element("small", {}, hourly) : null),
    element("td", { className: "cost" }, ...cost),
    ports,
    last,
    actionsCell(row),
  );
}

function render() {
  const board = state.board;
  if (!board) return;
  $("rows").replaceChildren(...board.rows.map(renderRow));
  $("empty").hidden = board.rows.length > 0;
  const running = board.rows.filter((row) => row.state === "running").length;
  const month = board.rows.reduce((sum, row) => sum + (row.month_usd ?? 0), 0);
  const floor = board.rows.some((row) => row.month_usd_at_least || row.month_usd === null);
  $("summary").textContent =
    `${board.rows.length} workspace${board.rows.length === 1 ? "" : "s"}, ${running} running · ${floor ? "at least " : ""}${money(month)} this month so far`;
  const errors = [board.local_error, board.aws_error ? `AWS: ${board.aws_error}` : null].filter(Boolean);
  $("errors").textContent = errors.join("\n");
  $("errors").hidden = errors.length === 0;
  $("connection").textContent = board.aws_in_use && board.aws_listed_unix_ms
    ? `AWS checked at ${clock(board.aws_listed_unix_ms)}, next at ${clock(board.aws_next_unix_ms)}`
    : "";
  updateCountdowns();
}

function showOutput(title, text, anyway) {
  closeLogs();
  $("output").hidden = false;
  $("output-title").textContent = title;
  $("output-text").textContent = text;
  $("output-anyway").hidden = !anyway;
  $("output-anyway").onclick = anyway ?? null;
}

function closeLogs() {
  if (state.logs) {
    state.logs.close();
    state.logs = null;
  }
}

async function post(row, action) {
  const response = await fetch(`/api/workspaces/${encodeURIComponent(row.name)}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) return { ok: false, code: null, output: await response.text() };
  return response.json();
}

async function act(row, action, label) {
  if (action === "delete" && !(await confirmDelete(row))) return;
  state.busy.set(row.name, action);
  render();
  showOutput(`${label} ${row.name}: running…`, "", null);
  let outcome;
  try {
    outcome = await post(row, action);
  } catch (error) {
    outcome = { ok: false, code: null, output: String(error) };
  } finally {
    state.busy.delete(row.name);
    render();
  }
  const title = `${label} ${row.name}: ${outcome.ok ? "done" : "failed"}`;
  const lossy = action === "delete" && !outcome.ok && outcome.output.includes("--yes");
  showOutput(title, outcome.output.trim() || "(no output)", lossy ? () => deleteAnyway(row) : null);
}

async function deleteAnyway(row) {
  $("output-anyway").hidden = true;
  state.busy.set(row.name, "delete");
  render();
  showOutput(`Delete ${row.name} anyway: running…`, "", null);
  let outcome;
  try {
    outcome = await post(row, "delete-anyway");
  } finally {
    state.busy.delete(row.name);
    render();
  }
  showOutput(`Delete ${row.name} anyway: ${outcome.ok ? "done" : "failed"}`, outcome.output.trim(), null);
}

function confirmDelete(row) {
  const dialog = $("confirm");
  $("confirm-text").textContent =
    `Delete workspace ${row.name}? Its dev container, built image, keys and state go` +
    (row.provider === "aws" ? ", with its instance and disk." : ".") +
    " Work that exists nowhere else is checked for first, and kept unless you agree to lose it.";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function copySsh(row, target) {
  try {
    await navigator.clipboard.writeText(row.ssh);
    target.textContent = "Copied";
  } catch {
    showOutput(`ssh line of ${row.name}`, row.ssh, null);
  }
  setTimeout(() => (target.textContent = "Copy ssh"), 1500);
}

function showLogs(row) {
  showOutput(`Output of ${row.name}`, "", null);
  const text = $("output-text");
  const source = new EventSource(`/api/workspaces/${encodeURIComponent(row.name)}/logs`);
  state.logs = source;
  source.addEventListener("output", (event) => {
    const atBottom = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
    text.append(JSON.parse(event.data));
    if (atBottom) text.scrollTop = text.scrollHeight;
  });
  source.addEventListener("failed", (event) => text.append(`\n${event.data}\n`));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) text.append("\n(the output stream ended)\n");
  };
}

async function showBootLog(row) {
  showOutput(`Boot log of ${row.name}`, "Reading the instance's console…", null);
  const response = await fetch(`/api/workspaces/${encodeURIComponent(row.name)}/boot-log`);
  const outcome = response.ok ? await response.json() : { output: await response.text() };
  $("output-text").textContent = outcome.output;
}

function follow() {
  const events = new EventSource("/api/events");
  events.addEventListener("board", (event) => {
    state.board = JSON.parse(event.data);
    $("connection").classList.remove("error");
    render();
  });
  events.onerror = () => {
    $("connection").textContent = "Lost skiff ui; reconnecting… (is `skiff ui` still running?)";
    $("connection").classList.add("error");
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("output-close").addEventListener("click", () => {
    closeLogs();
    $("output").hidden = true;
  });
  follow();
  setInterval(updateCountdowns, 1000);
});
