package app

import (
	"html/template"
	"strings"
)

// pages are the shop's HTML pages: "home", "login" and "forget" (Forget
// me's confirmation). Plain HTML and CSS, no script: every action is a
// form, so the shop works the same without JavaScript.
var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"money": money,
	"dec":   func(n int) int { return n - 1 },
	"initials": func(name string) string {
		var b strings.Builder
		for _, f := range strings.Fields(name) {
			b.WriteString(strings.ToUpper(string([]rune(f)[:1])))
		}
		return b.String()
	},
}).Parse(layout + home + login + forget))

const layout = `
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} – Guestpass Goods</title>
<link rel="icon" href="data:,">
<style>
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#23262f;background:#f7f4ee}
a{color:#3451b2}
:focus-visible{outline:3px solid #3451b2;outline-offset:2px}
.vh,.skip:not(:focus){position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.skip{position:absolute;left:1rem;top:.5rem;z-index:1;background:#23262f;color:#fff;padding:.5rem .9rem;border-radius:8px;font-weight:600}
.banner{background:#fff1f0;border-bottom:1px solid #f3c2bd;color:#8c2a20;padding:.7rem 2rem;overflow-wrap:anywhere}
.banner p{margin:0;max-width:60rem}
.banner p+p{margin-top:.3rem}
.banner strong{color:#6e1f17}
.banner a{color:inherit;font-weight:600}
.banner a,.banner .flag{white-space:nowrap}
.banner code{background:#fbdcd7}
header.top{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:.6rem 1rem;padding:.9rem 2rem;background:#fff;border-bottom:1px solid #e6e1d8}
.brand{display:flex;align-items:center;gap:.6rem;font-weight:700;font-size:1.15rem;color:#23262f;text-decoration:none}
.brand svg{width:28px;height:28px}
.who{display:flex;flex-wrap:wrap;align-items:center;gap:.6rem;margin-left:auto}
.who form{margin:0}
.avatar{display:inline-grid;place-items:center;width:34px;height:34px;border-radius:50%;background:#3451b2;color:#fff;font-weight:700;font-size:.85rem}
.badge{font-size:.75rem;font-weight:600;padding:.15rem .55rem;border-radius:99px;text-transform:uppercase;letter-spacing:.04em}
.badge.guest{background:#fff1cc;color:#8a5a00}
.badge.member{background:#d9f2e3;color:#1d6b40}
main{max-width:1100px;margin:0 auto;padding:1.5rem 2rem 2rem}
main:focus{outline:none}
h1{font-size:1.9rem;margin:.2rem 0}
.lede{margin:.2rem 0 1rem;color:#575c6b;max-width:46rem}
.notice{background:#e6f0ff;border:1px solid #bcd0f7;color:#1e3a7b;padding:.6rem .9rem;border-radius:10px}
.warn{background:#fff1f0;border:1px solid #f3c2bd;color:#8c2a20;padding:.6rem .9rem;border-radius:10px}
.notices{margin:.6rem 0 1rem;max-width:46rem}
.notices p{margin:0 0 .5rem}
.narrow{max-width:36rem;margin-top:1rem}
.actions{display:flex;flex-wrap:wrap;align-items:center;gap:.6rem;margin:1rem 0 0}
.layout{display:grid;grid-template-columns:minmax(0,1fr) 290px;gap:1.5rem;align-items:start}
.products{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:1rem}
.card{background:#fff;border:1px solid #e6e1d8;border-radius:14px;padding:.8rem;display:flex;flex-direction:column}
.tile{border-radius:10px;height:110px;display:grid;place-items:center}
.tile svg{width:72px;height:72px}
.card h3{font-size:1rem;margin:.6rem 0 0}
.card p{margin:.1rem 0 .6rem;color:#575c6b;font-size:.9rem;flex:1}
.row{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:.4rem}
.row .btn{font-size:.8rem;padding:.4rem .55rem}
.row form{margin:0}
.price{font-weight:700}
.btn{font:inherit;font-size:.85rem;font-weight:600;border:0;border-radius:8px;padding:.45rem .7rem;background:#3451b2;color:#fff;cursor:pointer;white-space:nowrap}
.btn:hover{background:#263f93}
.btn.ghost{background:transparent;color:#3451b2;border:1px solid #c9d2ef;text-decoration:none}
.btn.wide{width:100%;margin-top:.8rem;padding:.6rem}
.btn[disabled]{opacity:.55;cursor:not-allowed}
.btn.big{font-size:1rem;padding:.6rem 1rem}
.btn.danger{background:#a3321f}
.btn.danger:hover{background:#86281a}
a.btn{display:inline-block;text-decoration:none}
.cart{background:#fff;border:1px solid #e6e1d8;border-radius:14px;padding:1rem 1.1rem;position:sticky;top:1rem}
.cart h2{font-size:1.15rem;margin:0 0 .6rem;display:flex;align-items:center;gap:.5rem}
.count{background:#23262f;color:#fff;border-radius:99px;font-size:.8rem;padding:0 .55rem}
.cart ul{list-style:none;margin:0;padding:0}
.line{display:grid;grid-template-columns:1fr auto;gap:.2rem .6rem;padding:.6rem 0;border-bottom:1px solid #f0ece4}
.lname{font-weight:600}
.sub{text-align:right;color:#575c6b}
.qty{display:flex;align-items:center;gap:.35rem}
.qty form{margin:0}
.qty button,.x{font:inherit;width:28px;height:28px;border-radius:7px;border:1px solid #d8d3c9;background:#faf8f4;cursor:pointer}
.x{width:auto;padding:0 .5rem;font-size:.8rem;color:#8c2a20;border-color:#f0d0cc;background:#fff}
.n{min-width:1.4rem;text-align:center;font-weight:700}
.total{display:flex;justify-content:space-between;margin-top:.8rem;font-size:1.05rem}
.empty{color:#575c6b}
footer{max-width:1100px;margin:0 auto;padding:0 2rem 2rem;color:#575c6b;font-size:.85rem}
code{background:#efebe3;padding:.1rem .35rem;border-radius:5px}
footer a{color:#8c2a20}
.split{display:grid;grid-template-columns:minmax(0,380px) minmax(0,1fr);gap:1.5rem;align-items:start}
.panel{background:#fff;border:1px solid #e6e1d8;border-radius:14px;padding:1.2rem 1.4rem}
.panel h2{font-size:1.1rem;margin:0 0 .4rem}
.panel>:first-child{margin-top:0}
.panel>:last-child{margin-bottom:0}
.panel form>label:first-child{margin-top:0}
label{display:block;font-weight:600;margin:.8rem 0 .2rem}
input[type=text],input[type=password]{width:100%;font:inherit;padding:.5rem .6rem;border:1px solid #d8d3c9;border-radius:8px}
table.demo{border-collapse:collapse;margin:.6rem 0;width:100%}
table.demo th{text-align:left;font-size:.8rem;color:#575c6b;font-weight:600;padding:.3rem 1rem .3rem 0;border-bottom:1px solid #f0ece4}
table.demo td{padding:.45rem 1rem .45rem 0;border-bottom:1px solid #f0ece4}
table.demo :is(th,td):last-child{padding-right:0}
/* Narrower windows: the cart goes under the products, then the login
   panels stack, then a phone gets two columns of cards. These come last:
   a media query wins over the rules above only by coming after them. */
@media (max-width:860px){.layout{grid-template-columns:minmax(0,1fr)}.cart{position:static}}
@media (max-width:760px){.split{grid-template-columns:minmax(0,36rem)}}
@media (max-width:560px){
header.top,.banner{padding:.7rem 1rem}
.banner{font-size:.9rem}
main{padding:1rem 1rem 1.5rem}
footer{padding:0 1rem 1.5rem}
h1{font-size:1.5rem}
.products{grid-template-columns:repeat(2,minmax(0,1fr));gap:.75rem}
.card{padding:.6rem}
.row{flex-direction:column;align-items:stretch}
.row .btn{width:100%;font-size:.85rem;padding:.5rem}
.panel{padding:1rem}
}
@media (max-width:340px){.products{grid-template-columns:minmax(0,1fr)}}
</style>
</head>
<body>
<a class="skip" href="#main">Skip to main content</a>
{{- with .CookieWarning}}
<section class="banner" id="cookie-warning" aria-labelledby="cookie-warning-title">
<p><strong id="cookie-warning-title">Your cart will not work on this address.</strong>
Your browser drops the shop's Secure cookie on plain HTTP to <code>{{.Host}}</code>,
so every page makes you a new guest and nothing stays in your cart.</p>
<p>Use https, open the shop as <a href="{{.LocalURL}}">{{.LocalURL}}</a>,
or run it with <code class="flag">-insecure-cookies</code> (development only).</p>
</section>
{{- end}}
<header class="top">
<a class="brand" href="/"><svg viewBox="0 0 32 32" aria-hidden="true"><rect x="3" y="9" width="26" height="20" rx="4" fill="#3451b2"/><path d="M10 11V8a6 6 0 0 1 12 0v3" fill="none" stroke="#3451b2" stroke-width="3"/><circle cx="16" cy="19" r="3" fill="#fff"/></svg>Guestpass Goods</a>
<div class="who">
{{- with .User}}
<span class="avatar" aria-hidden="true">{{initials .Name}}</span>
<span id="user-name">{{.Name}}</span>
{{- if .IsAnonymous}}
<span class="badge guest" id="user-kind">Guest</span>
<a class="btn ghost" id="sign-in" href="/login"{{if eq $.Page "login"}} aria-current="page"{{end}}>Sign in</a>
{{- else}}
<span class="badge member" id="user-kind">Signed in</span>
<form method="post" action="/logout"><button class="btn ghost" id="log-out">Log out</button></form>
{{- end}}
{{- end}}
</div>
</header>
<main id="main" tabindex="-1">
{{end}}

{{define "foot"}}
</main>
<footer>
{{- with .User}}
{{- if .IsAnonymous}}
<p>You are guest <code id="user-id">{{.ID}}</code>, stored for 30 days after your last visit.
<a id="forget-me" href="/forget"{{if eq $.Page "forget"}} aria-current="page"{{end}}>Forget me</a></p>
{{- else}}
<p>Signed in to account <code id="user-id">{{.ID}}</code>.</p>
{{- end}}
{{- end}}
<p><a id="stats-link" href="/stats"{{if eq $.Page "stats"}} aria-current="page"{{end}}>Shop statistics</a></p>
</footer>
</body>
</html>
{{end}}
`

const home = `
{{define "home"}}{{template "head" .}}
<section>
{{- with .User}}
{{- if .IsAnonymous}}
<h1 id="greeting">Hello, {{.Name}}!</h1>
{{- else}}
<h1 id="greeting">Welcome back, {{.Name}}!</h1>
{{- end}}
{{- else}}
<h1 id="greeting">Hello!</h1>
{{- end}}
{{- with .Notices}}
<div class="notices" id="notice" role="{{if $.Alert}}alert{{else}}status{{end}}">
{{- range .}}
<p class="{{if .Warn}}warn{{else}}notice{{end}}">{{.Text}}{{if .Cart}} <a href="#cart">See your cart</a>{{end}}</p>
{{- end}}
</div>
{{- end}}
{{- if or (not .User) .CartDown}}
<p class="warn">We cannot see your cart right now. It is safe; please try again in a moment.</p>
{{- else if .User.IsAnonymous}}
<p class="lede">You are shopping as a guest: no sign-up, no email. Your cart waits for you on this browser
and moves into your account when you sign in.</p>
{{- else}}
<p class="lede">Your cart is saved in your account.</p>
{{- end}}
</section>
<div class="layout">
<section class="products" aria-labelledby="products-title">
<h2 class="vh" id="products-title">Products</h2>
{{- range .Products}}
<article class="card" id="product-{{.ID}}">
<div class="tile" style="background:{{.Color}}">{{.Icon}}</div>
<h3 id="name-{{.ID}}">{{.Name}}</h3>
<p>{{.Blurb}}</p>
<div class="row"><span class="price">{{money .Price}}</span>
<form method="post" action="/cart/add"><input type="hidden" name="product" value="{{.ID}}"><button class="btn" id="add-{{.ID}}">Add to cart<span class="vh">: {{.Name}}</span></button></form></div>
</article>
{{- end}}
</section>
<section class="cart" id="cart" aria-labelledby="cart-title">
<h2 id="cart-title">Your cart <span class="count"><span id="cart-count">{{.Count}}</span><span class="vh"> {{if eq .Count 1}}item{{else}}items{{end}}</span></span></h2>
{{- if .Lines}}
<ul>
{{- range .Lines}}
<li class="line" data-product="{{.Product.ID}}" data-qty="{{.Qty}}">
<span class="lname">{{.Product.Name}}</span>
<span class="sub">{{money .Subtotal}}</span>
<div class="qty" role="group" aria-label="Quantity of {{.Product.Name}}">
<form method="post" action="/cart/set"><input type="hidden" name="product" value="{{.Product.ID}}"><input type="hidden" name="qty" value="{{dec .Qty}}"><button aria-label="One less {{.Product.Name}}" id="less-{{.Product.ID}}">&minus;</button></form>
<span class="n">{{.Qty}}</span>
<form method="post" action="/cart/add"><input type="hidden" name="product" value="{{.Product.ID}}"><button aria-label="One more {{.Product.Name}}" id="more-{{.Product.ID}}">+</button></form>
</div>
<form method="post" action="/cart/set"><input type="hidden" name="product" value="{{.Product.ID}}"><input type="hidden" name="qty" value="0"><button class="x" id="remove-{{.Product.ID}}">Remove<span class="vh"> {{.Product.Name}}</span></button></form>
</li>
{{- end}}
</ul>
<div class="total"><span>Total</span><strong id="cart-total">{{money .Total}}</strong></div>
<button class="btn wide" disabled>Checkout (not in this demo)</button>
{{- else}}
<p class="empty" id="cart-empty">Your cart is empty.</p>
{{- end}}
</section>
</div>
{{template "foot" .}}{{end}}
`

const login = `
{{define "login"}}{{template "head" .}}
{{- if and .User (not .User.IsAnonymous)}}
<h1>You are signed in</h1>
<div class="panel narrow" id="signed-in">
<p>You are signed in as <strong>{{.User.Name}}</strong>, and your cart is in your account.
To sign in as someone else, log out first.</p>
<p class="actions"><a class="btn big" id="back-to-shop" href="/">Back to the shop</a></p>
</div>
{{- else}}
<h1>Sign in</h1>
<p class="lede">Signing in moves your guest cart into your account's cart.</p>
<div class="split">
<div class="panel">
{{- with .Error}}
<p class="warn" id="login-error" role="alert">{{.}}</p>
{{- end}}
<form method="post" action="/login">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" required{{if .Error}} aria-invalid="true" aria-describedby="login-error"{{end}}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{{if .Error}} aria-invalid="true" aria-describedby="login-error" autofocus{{end}}>
<button class="btn wide" id="sign-in-submit">Sign in</button>
</form>
</div>
<div class="panel">
<h2>Demo accounts</h2>
<p class="lede">This is a demo, so the passwords are right here.</p>
<table class="demo">
<caption class="vh">Demo accounts and their passwords</caption>
<tr><th scope="col">Account</th><th scope="col">Username</th><th scope="col">Password</th></tr>
{{- range .Accounts}}
<tr><td><strong>{{.Name}}</strong></td><td><code>{{.Username}}</code></td><td><code>{{.Password}}</code></td></tr>
{{- end}}
</table>
<p class="lede">Alice already has a mug in her cart: add one as a guest, sign in as alice, and she has two.</p>
</div>
</div>
{{- end}}
{{template "foot" .}}{{end}}
`

const forget = `
{{define "stats"}}{{template "head" .}}
<h1>Shop statistics</h1>
<p>Since the shop started, as its metrics count them (also at <a href="/metrics">/metrics</a>, for Prometheus).</p>
<dl class="stats">
<dt>Guests in the store</dt><dd id="stat-live">{{with .Stats.Live}}{{.}}{{else}}not counted by this store{{end}}</dd>
<dt>Guests stored</dt><dd id="stat-stored">{{.Stats.Stored}}</dd>
<dt>Guests who made an account</dt><dd id="stat-linked">{{.Stats.Linked}} ({{.Stats.LinkedToday}} today)</dd>
<dt>Conversion</dt><dd id="stat-conversion">{{.Stats.Conversion}}</dd>
</dl>
{{template "foot" .}}{{end}}

{{define "forget"}}{{template "head" .}}
{{- with .User}}
{{- if .IsAnonymous}}
<h1>Forget me?</h1>
<div class="panel narrow" id="forget-panel">
<p>This deletes the guest <strong>{{.Name}}</strong> from the shop
{{- if $.Lines}}, with its cart of {{$.Count}} {{if eq $.Count 1}}item{{else}}items{{end}} ({{money $.Total}}){{end}}.
It cannot be undone.</p>
<p>You can carry on shopping straight away, as a new guest with a new name and an empty cart.</p>
<form method="post" action="/forget" class="actions">
<input type="hidden" name="guest" value="{{.ID}}">
<button class="btn big danger" id="forget-confirm">Yes, forget me</button>
<a class="btn big ghost" id="forget-cancel" href="/">No, keep my cart</a>
</form>
</div>
{{- else}}
<h1>Nothing to forget</h1>
<p class="warn narrow" id="notice" role="alert">You are signed in as {{.Name}}, so there is no guest to forget:
Forget me only deletes guests, and your account and its cart are kept. (The page you came from was
older than your sign-in, perhaps from another tab.)</p>
<p class="actions"><a class="btn big" id="back-to-shop" href="/">Back to the shop</a></p>
{{- end}}
{{- else}}
<h1>Forget me?</h1>
<p class="warn narrow" id="notice" role="alert">We cannot reach the guest store right now, so nothing can be forgotten. Please try again in a moment.</p>
{{- end}}
{{template "foot" .}}{{end}}
`
