// skudemo back office: reads /admin/api/* and draws the page. No framework.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const when = (ms) => ms ? new Date(ms).toLocaleString() : "";

async function api(path, options) {
  const res = await fetch(path, Object.assign({credentials: "same-origin", headers: {"Accept": "application/json"}}, options));
  if (res.status === 401) { location.href = "/admin/login"; throw new Error("signed out"); }
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}

function drawStatus(o) {
  const s = o.scripts || {};
  const reload = s.last_reload_ok === false
    ? `<span class="bad">last reload failed: ${esc(s.last_error)}</span>`
    : `last reload ok`;
  $("status").innerHTML = `scripts generation ${esc(s.generation)} · loaded ${esc(when(s.loaded_at_ms))} · ${reload}`;
}

function drawSummary(o) {
  const j = o.jobs || {}, counts = o.order_counts || {};
  const cards = [
    ["orders", o.orders_total || 0], ["delivered", (counts.pending_confirmation || 0) + (counts.completed || 0)],
    ["in progress", counts.in_progress || 0], ["jobs queued", j.queued || 0],
    ["jobs running", j.running || 0], ["dead jobs", j.dead || 0],
  ];
  $("summary").innerHTML = cards.map(([what, n]) => `<div class="card"><div class="n">${esc(n)}</div><div class="what">${esc(what)}</div></div>`).join("");
}

function drawAttention(o) {
  const a = o.attention || {};
  const items = [];
  for (const ord of a.orders || [])
    items.push(`<div class="item"><span class="badge ${esc(ord.status)}">${esc(ord.status)}</span>
      <span class="grow">Order <a href="#" data-order="${esc(ord.id)}" class="mono">${esc(ord.id)}</a> — ${esc(ord.reason || "automation stopped")}</span></div>`);
  for (const job of a.dead_jobs || [])
    items.push(`<div class="item dead"><span class="badge">dead job</span>
      <span class="grow"><b>${esc(job.name)}</b> #${esc(job.id)} after ${esc(job.attempts)} attempts: ${esc(job.last_error)}</span>
      <button data-requeue="${esc(job.id)}">Run again</button></div>`);
  for (const task of a.failed_tasks || [])
    items.push(`<div class="item dead"><span class="badge">failed task</span>
      <span class="grow mono">${esc(task.task_id)}</span><span class="grow">${esc(task.error_message)}</span></div>`);
  $("attention-section").hidden = items.length === 0;
  $("attention").innerHTML = items.join("");
}

function drawGallery(o) {
  const images = o.images || [];
  if (!images.length) return;
  $("gallery").innerHTML = images.map((im) => `<figure data-src="${esc(im.url)}" data-prompt="${esc(im.prompt)}" data-title="${esc(im.requirement)}">
    <img src="${esc(im.url)}" alt="${esc(im.requirement)}" loading="lazy"><figcaption title="${esc(im.requirement)}">${esc(im.requirement)}</figcaption></figure>`).join("");
}

function drawOrders(o) {
  const orders = o.orders || [];
  if (!orders.length) return;
  $("orders").innerHTML = orders.map((ord) => `<tr>
    <td class="mono">${esc(ord.id)}</td><td><span class="badge ${esc(ord.status)}">${esc(ord.status)}</span></td>
    <td class="req" title="${esc(ord.requirement)}">${esc(ord.requirement) || '<span class="muted">—</span>'}</td>
    <td>${esc(when(ord.updated_at))}</td><td><button class="link" data-order="${esc(ord.id)}">Timeline</button></td></tr>`).join("");
}

async function showOrder(id) {
  const o = await api("/admin/api/orders/" + encodeURIComponent(id));
  $("order-title").textContent = "Order " + id;
  const ord = o.order || {};
  const steps = (o.timeline || []).map((e) => `<li class="${e.failure ? "failure" : ""}"><time>${esc(when(e.at))}</time><b>${esc(e.step)}</b> ${esc(e.detail || "")}</li>`).join("");
  const imgs = (o.images || []).map((im) => `<img src="${esc(im.url)}" alt="" style="width:120px;border-radius:6px;margin:.25rem">`).join("");
  $("order-body").innerHTML = `<p><span class="badge ${esc(ord.status)}">${esc(ord.status)}</span>
    <span class="muted">buyer</span> <span class="mono">${esc(ord.buyer_id)}</span></p>
    <p><span class="muted">Requirement:</span> ${esc(ord.requirement) || "—"}</p>${imgs}
    <ol class="timeline">${steps || "<li>Nothing yet.</li>"}</ol>`;
  $("order-dialog").showModal();
}

async function load() {
  try {
    const o = await api("/admin/api/overview");
    drawStatus(o); drawSummary(o); drawAttention(o); drawGallery(o); drawOrders(o);
  } catch (e) {
    $("status").textContent = "could not load: " + e.message;
  }
}

document.addEventListener("click", async (ev) => {
  const t = ev.target.closest("[data-order],[data-requeue],figure[data-src]");
  if (!t) return;
  ev.preventDefault();
  if (t.dataset.order) return showOrder(t.dataset.order);
  if (t.dataset.requeue) {
    t.disabled = true;
    await api(`/admin/api/jobs/${encodeURIComponent(t.dataset.requeue)}/requeue`, {method: "POST"});
    return load();
  }
  $("image-full").src = t.dataset.src;
  $("image-title").textContent = t.dataset.title;
  $("image-prompt").textContent = "Prompt: " + t.dataset.prompt;
  $("image-dialog").showModal();
});

load();
setInterval(load, 5000);
