// Lichen Field's service worker: the app shell from the cache first, so the app
// opens with no network at all; each shell file is fetched again in the
// background when there is a network, so a newer app arrives on the next
// opening. Nothing else passes through here: the boards, the cloud's API and
// the stored bundles (IndexedDB) are the app's own business.
"use strict";

const CACHE = "lichen-field-v2";
// Every file the app is made of (tests check this list against the files shipped).
const SHELL = ["./", "index.html", "field.css", "base.css", "icon.svg", "manifest.webmanifest", "app.js",
               "store.js", "transport.js", "exchange.js", "cloud.js", "bundle.js", "plot.js",
               "ble.js", "ble_link.js", "ble_http.js"];
const SCOPE = new URL("./", self.location.href);
const SHELL_URLS = new Set(SHELL.map((name) => new URL(name, SCOPE).href));

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("lichen-field-") && k !== CACHE)
                                    .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function refresh(request) {
  const response = await fetch(request, { cache: "no-cache" });
  if (response.ok) await (await caches.open(CACHE)).put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  url.search = "";
  if (request.method !== "GET" || !SHELL_URLS.has(url.href)) return;
  event.respondWith(caches.match(url.href).then((hit) => {
    const fresh = refresh(url.href);
    if (hit) {
      event.waitUntil(fresh.catch(() => null)); // offline: the cached copy stands
      return hit;
    }
    return fresh;
  }));
});
