package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// axePath is axe-core's browser bundle, which `npm ci` installs from this
// module's package-lock.json.
const axePath = "node_modules/axe-core/axe.min.js"

var (
	axeOnce sync.Once
	axeSrc  string
	axeErr  error
)

// axeScript returns axe-core's source, running `npm ci` first when it is not
// installed (a clean checkout). Without npm the test skips, loudly, except
// in CI or with ANON_REQUIRE_BROWSER=1, where it fails.
func axeScript(t *testing.T) string {
	t.Helper()
	axeOnce.Do(func() {
		if _, err := os.Stat(axePath); err != nil {
			npm, err := exec.LookPath("npm")
			if err != nil {
				axeErr = fmt.Errorf("NO NPM to install axe-core (%v); install Node.js and npm, or run `npm ci` in e2e/", err)
				return
			}
			cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
			if out, err := cmd.CombinedOutput(); err != nil {
				axeErr = fmt.Errorf("npm ci: %v\n%s", err, out)
				return
			}
		}
		b, err := os.ReadFile(filepath.FromSlash(axePath))
		axeSrc, axeErr = string(b), err
	})
	if axeErr != nil {
		if strings.HasPrefix(axeErr.Error(), "NO NPM") && os.Getenv("CI") == "" && os.Getenv("ANON_REQUIRE_BROWSER") != "1" {
			t.Skip("SKIPPED: " + axeErr.Error())
		}
		t.Fatal(axeErr)
	}
	return axeSrc
}

// layoutProblems measures the page as laid out in the window and lists what
// a person would see as broken: a page wider than the window, something
// sticking out of it sideways, a product card overlapping another or the
// cart, a card narrower than its content or something sticking out of a
// card, and table columns whose text runs together.
const layoutProblems = `(() => {
  const out = [];
  const W = window.innerWidth, eps = 0.5;
  const name = (el) => el.id ? "#" + el.id :
    el.tagName.toLowerCase() + [...el.classList].map((c) => "." + c).join("") +
    (el.textContent.trim() ? " (" + JSON.stringify(el.textContent.trim().replace(/\s+/g, " ").slice(0, 30)) + ")" : "");
  const hidden = (el) => el.closest(".vh, .skip") !== null;
  const px = (n) => Math.round(n * 10) / 10;

  const sw = document.documentElement.scrollWidth;
  if (sw > W) out.push("the page is " + sw + "px wide in a " + W + "px window");
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || hidden(el)) continue;
    if (r.left < -eps || r.right > W + eps)
      out.push(name(el) + " spans x " + px(r.left) + ".." + px(r.right) + ", outside the " + W + "px window");
  }

  const cards = [...document.querySelectorAll(".card")];
  for (const c of cards) {
    const cr = c.getBoundingClientRect();
    if (c.scrollWidth > c.clientWidth)
      out.push(name(c) + " is " + c.clientWidth + "px wide, narrower than its " + c.scrollWidth + "px of content");
    for (const el of c.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || hidden(el)) continue;
      if (r.left < cr.left - eps || r.right > cr.right + eps)
        out.push(name(el) + " sticks out of " + name(c) + " (x " + px(r.left) + ".." + px(r.right) + " in " + px(cr.left) + ".." + px(cr.right) + ")");
    }
  }
  const boxes = cards.concat([...document.querySelectorAll("#cart")]);
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i].getBoundingClientRect(), b = boxes[j].getBoundingClientRect();
      if (a.left < b.right - eps && b.left < a.right - eps && a.top < b.bottom - eps && b.top < a.bottom - eps)
        out.push(name(boxes[i]) + " overlaps " + name(boxes[j]));
    }
  }

  for (const row of document.querySelectorAll("tr")) {
    const cells = [...row.cells].map((cell) => {
      const rg = document.createRange();
      rg.selectNodeContents(cell);
      return [cell, rg.getBoundingClientRect()];
    });
    for (let i = 1; i < cells.length; i++) {
      const [a, ra] = cells[i - 1], [b, rb] = cells[i];
      if (rb.left - ra.right < 8)
        out.push("table cells " + name(a) + " and " + name(b) + " are " + px(rb.left - ra.right) + "px apart");
    }
  }
  return out;
})()`

// axeViolation is one axe-core rule a page breaks.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Tags   []string `json:"tags"`
	Nodes  []string `json:"nodes"`
}

func (v axeViolation) String() string {
	return fmt.Sprintf("%s (%s): %s\n\t\t%s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t\t"))
}

// axeRun runs axe-core on the page for the WCAG 2.0, 2.1 and 2.2 A and AA
// rules, and returns the violations.
const axeRun = `axe.run(document, {
  runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
  resultTypes: ["violations"],
}).then((r) => r.violations.map((v) => ({
  id: v.id, impact: v.impact ?? "", help: v.help, tags: v.tags,
  nodes: v.nodes.map((n) => n.target.join(" ") + ": " + (n.failureSummary ?? "").replace(/\s+/g, " ")),
})))`

// audit measures the page's layout and runs axe-core on it.
func audit(ctx context.Context, axe string) (layout []string, violations []axeViolation, err error) {
	if layout, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](layoutProblems)); err != nil {
		return nil, nil, fmt.Errorf("measuring the layout: %w", err)
	}
	ready, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof axe === "object"`))
	if err != nil {
		return nil, nil, err
	}
	if !ready {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](axe)); err != nil {
			return nil, nil, fmt.Errorf("injecting axe-core: %w", err)
		}
	}
	violations, err = chromedp.Run(ctx, chromedp.Evaluate[[]axeViolation](axeRun, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, nil, fmt.Errorf("running axe-core: %w", err)
	}
	return layout, violations, nil
}

// serious reports whether a violation is one the test fails on.
func serious(v axeViolation) bool { return v.Impact == "serious" || v.Impact == "critical" }
