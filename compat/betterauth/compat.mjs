// Runs the real npm better-auth client, with anonymousClient(), against the
// Go endpoints (./server, started with `go run`), and checks what an
// application relies on. One line per check, then "N passed, N failed";
// the exit status is non-zero on any failure.
//
// Node has no cookie jar, so cookies are carried by hand: onResponse keeps
// what Set-Cookie says, onRequest sends it back, as a browser would.

import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createAuthClient } from "better-auth/client";
import { anonymousClient } from "better-auth/client/plugins";

const COOKIE = "__Host-anonymous_guest";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// startServer runs the Go server and resolves to the base URL it prints.
function startServer() {
  const child = spawn("go", ["run", "./compat/betterauth/server"], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  });
  // Closing the stdin of a server that already exited must not crash the
  // script; the server's own errors show on its stderr.
  child.stdin.on("error", () => {});
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the Go server printed no URL within 300 s")), 300_000);
    const settle = (f) => (v) => {
      clearTimeout(timer);
      f(v);
    };
    createInterface({ input: child.stdout }).once("line", settle((line) => resolve(line.trim())));
    child.once("error", settle(reject));
    child.once("exit", settle((code) => reject(new Error(`the Go server exited with status ${code}`))));
  });
  return { child, url };
}

// The hand-carried cookie jar, and the Set-Cookie lines of the last answer.
const jar = new Map();
let sendCookies = true;
let lastSetCookies = [];

function keepCookies(setCookies) {
  lastSetCookies = setCookies;
  for (const line of setCookies) {
    const [pair, ...attrs] = line.split(";").map((s) => s.trim());
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const maxAge = attrs.find((a) => a.toLowerCase().startsWith("max-age="));
    if (value === "" || (maxAge && Number(maxAge.split("=")[1]) <= 0)) jar.delete(name);
    else jar.set(name, value);
  }
}

function newClient(baseURL) {
  return createAuthClient({
    baseURL,
    plugins: [anonymousClient()],
    fetchOptions: {
      onRequest(ctx) {
        if (sendCookies && jar.size > 0) {
          ctx.headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
        }
        return ctx;
      },
      onResponse(ctx) {
        keepCookies(ctx.response.headers.getSetCookie());
      },
    },
  });
}

let passed = 0;
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.message}`);
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

function show(v) {
  return JSON.stringify(v);
}

function wantError(res, status, code, message) {
  assert(res.data === null, `data = ${show(res.data)}, want null`);
  assert(res.error, "no error");
  assert(res.error.status === status, `status = ${res.error.status}, want ${status}`);
  assert(res.error.code === code, `code = ${res.error.code}, want ${code}`);
  assert(res.error.message === message, `message = ${show(res.error.message)}, want ${show(message)}`);
}

const bearer = (token) => ({ fetchOptions: { auth: { type: "Bearer", token } } });
const asRealUser = { fetchOptions: { headers: { "X-Compat-User": "real-user-1" } } };

async function run(auth) {
  let guest; // {token, user} from sign-in

  await check("getSession() without a guest is null, and issues no cookie", async () => {
    const res = await auth.getSession();
    assert(res.error === null, `error = ${show(res.error)}`);
    assert(res.data === null, `data = ${show(res.data)}, want null`);
    assert(lastSetCookies.length === 0, `Set-Cookie: ${show(lastSetCookies)}`);
  });

  await check("signIn.anonymous() returns a new guest", async () => {
    const res = await auth.signIn.anonymous();
    assert(res.error === null, `error = ${show(res.error)}`);
    guest = res.data;
    const u = guest?.user;
    assert(u, `data = ${show(res.data)}`);
    assert(u.isAnonymous === true, `isAnonymous = ${u.isAnonymous}`);
    assert(u.email === `temp@${String(u.id).toLowerCase()}.com`, `email = ${u.email}, id = ${u.id}`);
    assert(u.name === "Anonymous", `name = ${u.name}`);
    assert(u.emailVerified === false, `emailVerified = ${u.emailVerified}`);
    assert(!Number.isNaN(Date.parse(u.createdAt)), `createdAt = ${u.createdAt}`);
    assert(Math.abs(Date.parse(u.createdAt) - Date.now()) < 60_000, `createdAt = ${u.createdAt}, not now`);
    assert(typeof guest.token === "string" && guest.token.length > 0, `token = ${show(guest.token)}`);
  });

  await check("signIn.anonymous() sets an HttpOnly, SameSite=Lax, Secure guest cookie", async () => {
    assert(jar.has(COOKIE), `no ${COOKIE} cookie; Set-Cookie: ${show(lastSetCookies)}`);
    const line = lastSetCookies.find((l) => l.startsWith(`${COOKIE}=`));
    for (const attr of ["HttpOnly", "SameSite=Lax", "Secure"]) {
      assert(line.split("; ").includes(attr), `${attr} missing in ${line}`);
    }
  });

  await check("getSession() returns the guest, with a future expiresAt", async () => {
    const res = await auth.getSession();
    assert(res.error === null, `error = ${show(res.error)}`);
    const { session, user } = res.data ?? {};
    assert(user?.id === guest.user.id, `user = ${show(user)}`);
    assert(user.isAnonymous === true, "isAnonymous is not true");
    assert(session?.userId === guest.user.id, `session.userId = ${session?.userId}`);
    assert(session.token === guest.token, "session.token is not the sign-in token");
    assert(Date.parse(session.expiresAt) > Date.now(), `expiresAt = ${session.expiresAt}`);
  });

  await check("getSession() with the bearer token and no cookie returns the guest", async () => {
    sendCookies = false;
    try {
      const res = await auth.getSession(bearer(guest.token));
      assert(res.data?.user?.id === guest.user.id, `data = ${show(res.data)}`);
    } finally {
      sendCookies = true;
    }
  });

  await check("a second signIn.anonymous() is refused with 400", async () => {
    wantError(
      await auth.signIn.anonymous(),
      400,
      "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY",
      "Anonymous users cannot sign in again anonymously",
    );
  });

  await check("deleteAnonymousUser() by a real user is refused with 403", async () => {
    sendCookies = false; // with the guest cookie, the real user's request would link the guest
    try {
      wantError(await auth.deleteAnonymousUser(asRealUser), 403, "USER_IS_NOT_ANONYMOUS", "User is not anonymous");
    } finally {
      sendCookies = true;
    }
  });

  await check("deleteAnonymousUser() returns {success: true} and drops the cookie", async () => {
    const res = await auth.deleteAnonymousUser();
    assert(res.error === null, `error = ${show(res.error)}`);
    assert(show(res.data) === show({ success: true }), `data = ${show(res.data)}`);
    assert(!jar.has(COOKIE), `cookie kept; Set-Cookie: ${show(lastSetCookies)}`);
  });

  await check("getSession() after the delete is null", async () => {
    const res = await auth.getSession();
    assert(res.error === null && res.data === null, `data = ${show(res.data)}, error = ${show(res.error)}`);
  });

  await check("a second deleteAnonymousUser() is 401, with or without the old token", async () => {
    wantError(await auth.deleteAnonymousUser(), 401, "UNAUTHORIZED", "Unauthorized");
    // The deleted guest's token, as a client that kept it would send it.
    wantError(await auth.deleteAnonymousUser(bearer(guest.token)), 401, "UNAUTHORIZED", "Unauthorized");
  });

  await check("signIn.anonymous() by a signed-in real user is refused with 400", async () => {
    wantError(
      await auth.signIn.anonymous(asRealUser),
      400,
      "SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY",
      "Signed-in users cannot sign in anonymously",
    );
    assert(!jar.has(COOKIE), "a signed-in user got a guest cookie");
  });

  await check("getSession() of a signed-in real user links the guest it carries and is null", async () => {
    const res = await auth.signIn.anonymous();
    assert(res.data?.token && jar.has(COOKIE), `sign-in: ${show(res.error)}`);
    const linked = await auth.getSession(asRealUser);
    assert(linked.error === null && linked.data === null, `data = ${show(linked.data)}, error = ${show(linked.error)}`);
    assert(!jar.has(COOKIE), `the linked guest's cookie was kept; Set-Cookie: ${show(lastSetCookies)}`);
    const after = await auth.getSession(bearer(res.data.token));
    assert(after.error === null && after.data === null, `the linked guest's token still opens ${show(after.data)}`);
  });

  await check("a guest without cookies signs in and deletes itself with its bearer token", async () => {
    sendCookies = false;
    try {
      const res = await auth.signIn.anonymous();
      const token = res.data?.token;
      assert(token, `sign-in: ${show(res.error)}`);
      const del = await auth.deleteAnonymousUser(bearer(token));
      assert(del.data?.success === true, `delete: ${show(del.error)}`);
      const after = await auth.getSession(bearer(token));
      assert(after.error === null && after.data === null, `getSession after delete = ${show(after.data)}`);
    } finally {
      sendCookies = true;
      jar.clear();
    }
  });
}

const server = startServer();
try {
  await run(newClient(await server.url));
} catch (err) {
  failed++;
  console.log(`FAIL ${err.message}`);
} finally {
  server.child.stdin.end();
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
