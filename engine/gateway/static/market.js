// The TechX live market page: a client of the gateway's public socket, GET /v1/market.
//
// It asks for the market views from the beginning of the compacted market data topic (the
// newest view of every technology) and the recent deals, then follows both live. One card
// per technology is redrawn from its newest view; the deals list keeps the latest few.
// The socket carries public data only: views never show a sealed bid, a hidden reserve or
// who bid, and a deal comes as technology, price, quantity and time.
//
// The clock: the exchange's time is the broker's log time, not this computer's. Every view
// and deal carries the log time of its command, and the gateway's greeting and positions
// messages the newest log time it has read (ticks included). The page keeps the latest such
// time and the moment it arrived, and counts on from there with this computer's elapsed
// time (performance.now, which no clock change moves). The estimate is never ahead of the
// exchange: a deadline shows at most a little more time left than there is, and the
// view the engine publishes when the deadline fires corrects the card.
"use strict";

const DEALS_SHOWN = 20;
const TICK_MS = 250;
const RETRY_FIRST_MS = 500;
const RETRY_MOST_MS = 30000;

const MECHANISMS = {
  continuous: "Continuous book",
  call: "Call auction",
  english: "English auction",
  sealed_first: "Sealed tender, first price",
  sealed_second: "Sealed tender, second price",
  dutch: "Dutch clock",
};

const STATES = { open: "Open", halted: "Halted", closed: "Closed", withdrawn: "Withdrawn" };

// --- formatting ---------------------------------------------------------------------------

/** Whole numbers with "." between thousands, as đồng amounts are written in Vietnam. */
function integer(n) {
  const sign = n < 0 ? "-" : "";
  return sign + String(Math.abs(Math.trunc(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ".");
}

function dong(n) {
  return n == null ? "—" : `${integer(n)} đ`;
}

function units(n) {
  return n == null ? "—" : integer(n);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A log time as the local wall-clock time of day, HH:MM:SS. */
function timeOfDay(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Time left, read aloud well: "1 h 02 min 05 s", "2 min 05 s", "42 s". */
function duration(ms) {
  const total = Math.ceil(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${pad(m)} min ${pad(s)} s`;
  if (m > 0) return `${m} min ${pad(s)} s`;
  return `${s} s`;
}

// --- the exchange's clock -----------------------------------------------------------------

const clock = { logMs: null, at: 0 };

/** The exchange's time now, estimated; null before any time was seen. */
function logNow() {
  return clock.logMs === null ? null : clock.logMs + (performance.now() - clock.at);
}

/** A log time seen now: it moves the estimate forward, never back. */
function sawLogTime(ms) {
  if (typeof ms !== "number") return;
  const now = logNow();
  if (now === null || ms > now) {
    clock.logMs = ms;
    clock.at = performance.now();
  }
}

// --- DOM helpers --------------------------------------------------------------------------

/** An element with attributes and children (text is always set as text, never as HTML). */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** One term and its value in a card's list of facts. */
function fact(label, field, value) {
  return [el("dt", {}, label), el("dd", { "data-field": field, class: "num" }, value)];
}

/** A countdown that the ticker keeps current: the deadline is in data-deadline. */
function countdown(label, field, deadlineMs) {
  if (deadlineMs == null) return fact(label, field, "—");
  const time = el("time", {
    "data-field": field,
    "data-deadline": String(deadlineMs),
    datetime: new Date(deadlineMs).toISOString(),
    title: `at ${timeOfDay(deadlineMs)} (exchange time)`,
  });
  showCountdown(time);
  return [el("dt", {}, label), el("dd", { class: "num" }, time)];
}

function showCountdown(time) {
  const deadline = Number(time.dataset.deadline);
  const now = logNow();
  let text;
  if (now === null) text = `at ${timeOfDay(deadline)}`;
  else if (deadline - now > 0) text = duration(deadline - now);
  else text = "due now";
  if (time.textContent !== text) time.textContent = text;
}

function tickCountdowns() {
  for (const time of document.querySelectorAll("time[data-deadline]")) showCountdown(time);
}

// --- the cards ----------------------------------------------------------------------------

const cards = new Map(); // technology id -> its <article>

function levelsTable(view) {
  const depth = Math.max(view.bids.length, view.offers.length);
  const rows = [];
  for (let i = 0; i < depth; i += 1) {
    const bid = view.bids[i];
    const offer = view.offers[i];
    rows.push(
      el(
        "tr",
        {},
        el("td", { class: "num bid" }, bid ? units(bid[1]) : ""),
        el("td", { class: "num bid" }, bid ? dong(bid[0]) : ""),
        el("td", { class: "num offer" }, offer ? dong(offer[0]) : ""),
        el("td", { class: "num offer" }, offer ? units(offer[1]) : ""),
      ),
    );
  }
  if (depth === 0) {
    rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "No orders in the book.")));
  }
  return el(
    "table",
    { class: "book", "data-field": "book" },
    el("caption", {}, "Best bids and offers"),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", class: "num", title: "quantity bid" }, "Qty"),
        el("th", { scope: "col", class: "num" }, "Bid"),
        el("th", { scope: "col", class: "num" }, "Offer"),
        el("th", { scope: "col", class: "num", title: "quantity offered" }, "Qty"),
      ),
    ),
    el("tbody", { "data-field": "levels" }, rows),
  );
}

function lastTrade(view) {
  if (view.last_price == null) return "—";
  return `${units(view.last_quantity)} × ${dong(view.last_price)}`;
}

/** What the card shows for a view, by mechanism. */
function cardBody(view) {
  const facts = [];
  let book = null;
  switch (view.mechanism) {
    case "continuous":
      facts.push(fact("Last trade", "last", lastTrade(view)));
      book = levelsTable(view);
      break;
    case "call":
      facts.push(
        fact("Indicative price", "indicative-price", dong(view.indicative_price)),
        fact("Indicative volume", "indicative-volume", units(view.indicative_volume)),
        fact("Surplus", "surplus", units(view.surplus)),
        countdown("Next uncross in", "countdown", view.next_uncross_at_ms),
        fact("Last trade", "last", lastTrade(view)),
      );
      book = levelsTable(view);
      break;
    case "english":
      facts.push(
        fact("High bid", "high-bid", dong(view.high_bid)),
        fact("Next minimum bid", "next-minimum", dong(view.next_minimum_bid)),
        fact("Bids", "bid-count", units(view.bid_count)),
      );
      if (view.reserve_met != null) {
        facts.push(fact("Reserve", "reserve", view.reserve_met ? "met" : "not met"));
      }
      if (view.state === "open") facts.push(countdown("Ends in", "countdown", view.ends_at_ms));
      if (view.last_price != null) facts.push(fact("Sold", "last", lastTrade(view)));
      break;
    case "sealed_first":
    case "sealed_second":
      facts.push(fact("Sealed bids", "bid-count", units(view.bid_count)));
      if (view.state === "open") facts.push(countdown("Ends in", "countdown", view.ends_at_ms));
      break;
    case "dutch":
      facts.push(
        fact("Current price", "current-price", dong(view.current_price)),
        fact("Units left", "remaining", units(view.remaining_quantity)),
      );
      if (view.state === "open") {
        facts.push(countdown("Next step in", "countdown", view.next_step_at_ms));
      }
      facts.push(fact("Last trade", "last", lastTrade(view)));
      break;
    default:
      facts.push(fact("Last trade", "last", lastTrade(view)));
  }
  return [el("dl", { class: "facts" }, facts), book];
}

function showView(view) {
  const id = view.technology_id;
  let card = cards.get(id);
  if (!card) {
    card = el("article", { class: "card", "data-technology-id": id, "aria-labelledby": `t-${id}` });
    cards.set(id, card);
    const after = [...cards.keys()].sort().find((other) => other > id);
    document.getElementById("markets").insertBefore(card, after ? cards.get(after) : null);
    document.getElementById("no-markets").hidden = true;
  }
  card.dataset.state = view.state;
  card.dataset.mechanism = view.mechanism;
  card.replaceChildren(
    el(
      "header",
      { class: "card-head" },
      el("h3", { id: `t-${id}`, "data-field": "technology" }, id),
      el("span", { class: "mechanism", "data-field": "mechanism" }, MECHANISMS[view.mechanism] || view.mechanism),
      el("span", { class: "state", "data-field": "state" }, STATES[view.state] || view.state),
    ),
    ...cardBody(view).filter(Boolean),
    el("p", { class: "as-of" }, `as of ${timeOfDay(view.timestamp_ms)}`),
  );
}

// --- the deals ----------------------------------------------------------------------------

const deals = new Map(); // deal id -> deal

function dealNumber(deal) {
  return Number(deal.deal_id.slice(deal.deal_id.lastIndexOf(":d") + 2)) || 0;
}

function showDeal(deal) {
  if (deals.has(deal.deal_id)) return;
  deals.set(deal.deal_id, deal);
  const newest = [...deals.values()].sort(
    (a, b) =>
      b.timestamp_ms - a.timestamp_ms ||
      (a.technology_id < b.technology_id ? -1 : a.technology_id > b.technology_id ? 1 : 0) ||
      dealNumber(b) - dealNumber(a),
  );
  for (const old of newest.slice(DEALS_SHOWN)) deals.delete(old.deal_id);
  document.querySelector("#deals tbody").replaceChildren(
    ...newest.slice(0, DEALS_SHOWN).map((d) =>
      el(
        "tr",
        { "data-deal-id": d.deal_id },
        el("td", {}, el("time", { datetime: new Date(d.timestamp_ms).toISOString() }, timeOfDay(d.timestamp_ms))),
        el("td", {}, d.technology_id),
        el("td", { class: "num" }, units(d.quantity)),
        el("td", { class: "num" }, dong(d.price)),
      ),
    ),
  );
  document.getElementById("no-deals").hidden = true;
}

// --- the socket ---------------------------------------------------------------------------

/** Next offset to read per "stream:partition": where a reconnect resumes. */
const positions = new Map();
let failures = 0;

function setConnection(state, text) {
  const status = document.getElementById("connection");
  status.dataset.state = state;
  status.textContent = text;
}

function notePositions(nested) {
  for (const [stream, partitions] of Object.entries(nested || {})) {
    for (const [partition, offset] of Object.entries(partitions)) {
      positions.set(`${stream}:${partition}`, offset);
    }
  }
}

function socketUrl() {
  const url = new URL("v1/market", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("deals", "true");
  if (positions.size === 0) {
    url.searchParams.set("from", "beginning");
  } else {
    const resume = [...positions].map(([where, offset]) => `${where}:${offset}`).join(",");
    url.searchParams.set("resume", resume);
  }
  return url.toString();
}

function receive(message) {
  switch (message.type) {
    case "subscribed":
      failures = 0;
      setConnection("live", "Live");
      notePositions(message.positions);
      sawLogTime(message.log_time_ms);
      break;
    case "positions":
      notePositions(message.positions);
      sawLogTime(message.log_time_ms);
      break;
    case "view":
      positions.set(`${message.topic}:${message.partition}`, message.offset + 1);
      sawLogTime(message.view.timestamp_ms);
      showView(message.view);
      break;
    case "trade":
      positions.set(`${message.topic}:${message.partition}`, message.offset + 1);
      sawLogTime(message.trade.timestamp_ms);
      showDeal(message.trade);
      break;
    default:
      break; // "gap" and anything newer: nothing to draw
  }
}

function connect() {
  setConnection("connecting", failures ? "Reconnecting…" : "Connecting…");
  const socket = new WebSocket(socketUrl());
  socket.addEventListener("message", (event) => {
    try {
      receive(JSON.parse(event.data));
    } catch (error) {
      console.error("techx: a message could not be shown", error);
    }
  });
  socket.addEventListener("close", () => {
    // Backoff with jitter: a gateway that restarts is not met by every page at once.
    failures += 1;
    const wait = Math.min(RETRY_MOST_MS, RETRY_FIRST_MS * 2 ** (failures - 1));
    const delay = Math.round(wait / 2 + Math.random() * (wait / 2));
    setConnection("offline", `Disconnected; retrying in ${Math.ceil(delay / 1000)} s`);
    window.setTimeout(connect, delay);
  });
}

connect();
window.setInterval(tickCountdowns, TICK_MS);
