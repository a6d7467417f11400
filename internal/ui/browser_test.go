package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"fieldsync/agent/api"
)

var writeDocs = flag.Bool("docs", false, "write screenshots of the main views to docs/ui/")

// chromium finds a Chromium or Chrome binary: $FIELDSYNC_CHROMIUM, then the
// usual names (Debian's package is /usr/bin/chromium).
func chromium() string {
	if p := os.Getenv("FIELDSYNC_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts a headless Chromium (1100×800, scale 1) and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium()
	if exe == "" {
		t.Skip("no Chromium found (install Debian's chromium, or set FIELDSYNC_CHROMIUM): the browser tests need one")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1100, 800),
		chromedp.Flag("force-device-scale-factor", "1"),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	tctx, cancelT := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(tctx, 3*time.Minute)
	t.Cleanup(func() { cancel(); cancelT(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 800)); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate in the page until it holds (bounded:
// the test fails, naming what it waited for, if it never does).
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s (%s): %v\npage:\n%s", what, expr, err, page)
	}
}

// goTo shows a view (the page routes on its fragment) and waits until it is
// rendered.
func goTo(t *testing.T, ctx context.Context, hash, view string) {
	t.Helper()
	if eval[string](t, ctx, `location.hash`) == hash {
		waitFor(t, ctx, "view "+view, fmt.Sprintf(`document.getElementById('view').dataset.view===%q`, view))
		return
	}
	before := eval[string](t, ctx, `document.getElementById('view').dataset.rendered || ''`)
	do(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q; undefined`, hash)))
	waitFor(t, ctx, "view "+view, fmt.Sprintf(`(function(){const v=document.getElementById('view'); return v.dataset.view===%q && (v.dataset.rendered||'')!==%q})()`, view, before))
}

func js(s string) string { b, _ := json.Marshal(s); return string(b) }

func recordHash(space, record string) string { return "#record/" + space + "/" + record }

// TestBrowser drives the page in a real headless Chromium against a real
// agent: open it with the token, search, read a record and its signed
// history, see a conflict made by two devices side by side and resolve it
// with a reason, see a write made elsewhere arrive without a reload, and
// check right-to-left layout on a screenshot.
func TestBrowser(t *testing.T) {
	f := getFixture(t)
	ctx := browser(t)
	url := startUI(t, f, f.a)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(url, "/?token=") {
		t.Fatalf("fieldsync ui printed %q", url)
	}
	ca := f.a.Client()
	sp := f.space.ID

	t.Run("open", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url))
		waitFor(t, ctx, "the home view", `document.getElementById('view').dataset.view==='home' && !!document.querySelector('#spaces tr[data-space]')`)
		if name := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#spaces tr[data-space=%q] td').textContent`, sp)); name != f.space.Name {
			t.Errorf("space shown as %q, want %q", name, f.space.Name)
		}
		waitFor(t, ctx, "live updates", `document.getElementById('live').classList.contains('on')`)
		if !eval[bool](t, ctx, `!!document.querySelector('#conflicts-list a[href*="p1"]')`) {
			t.Error("the home view does not list p1's conflict")
		}
		shot(t, ctx, "home")
	})

	t.Run("search", func(t *testing.T) {
		goTo(t, ctx, "#search", "home")
		do(t, ctx, chromedp.SendKeys("#search-q", "Amina"), chromedp.Click("#search-go"))
		waitFor(t, ctx, "search results", `!!document.querySelector('#search-hits, #search-error, #search-summary')`)
		if msg := eval[string](t, ctx, `(document.getElementById('search-error')||{}).textContent||''`); msg != "" {
			if !strings.HasPrefix(msg, "search failed: ") {
				t.Fatalf("the agent's error is not shown readably: %q", msg)
			}
			t.Fatalf("search failed: %s", msg)
		}
		waitFor(t, ctx, "a hit on the RTL record", fmt.Sprintf(`!!document.querySelector('#search-hits tr[data-record=%q]')`, recRTL))
		// Across scripts: the same name typed in Cyrillic finds it too.
		// (the first query's rows are removed, so only a new answer can match)
		eval[string](t, ctx, `(document.querySelectorAll("#search-hits tr").forEach(r => r.remove()), document.getElementById("search-q").value="")`)
		do(t, ctx, chromedp.SendKeys("#search-q", "Амина"), chromedp.Click("#search-go"))
		waitFor(t, ctx, "a Cyrillic query's hit on the RTL record", fmt.Sprintf(`document.getElementById('search-q').value==='Амина' && !!document.querySelector('#search-hits tr[data-record=%q]')`, recRTL))
		do(t, ctx, chromedp.Click(fmt.Sprintf(`#search-hits tr[data-record=%q] a`, recRTL)))
		waitFor(t, ctx, "the record from the hit", `document.getElementById('view').dataset.view==='record' && !!document.querySelector('#fields')`)
	})

	t.Run("record and history", func(t *testing.T) {
		goTo(t, ctx, recordHash(sp, recRTL), "record")
		rec, err := ca.RecordGet(context.Background(), api.RecordRef{Space: sp, Record: recRTL})
		if err != nil {
			t.Fatal(err)
		}
		for name, fl := range rec.Fields {
			got := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#fields tr[data-field=%q] td.value').textContent`, name))
			if got != fl.Value {
				t.Errorf("field %s shown as %q, want %q", name, got, fl.Value)
			}
		}
		if got := eval[string](t, ctx, `document.querySelector('#sets tr[data-set="aliases"] li').textContent`); got != "أم علي" {
			t.Errorf("set element %q", got)
		}
		if got := eval[string](t, ctx, `document.querySelector('#notes .note-text').textContent`); got != rec.Notes[0].Text {
			t.Errorf("note %q, want %q", got, rec.Notes[0].Text)
		}
		hist, err := ca.History(context.Background(), api.RecordRef{Space: sp, Record: recRTL})
		if err != nil {
			t.Fatal(err)
		}
		rows := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#history tr[data-seq]')).map(r => r.textContent)`)
		if len(rows) != len(hist) || len(rows) == 0 {
			t.Fatalf("history shows %d changes, the agent has %d", len(rows), len(hist))
		}
		for i, e := range hist {
			for _, want := range []string{e.Officer, e.Author[:8], "valid", e.Time} {
				if !strings.Contains(rows[i], want) {
					t.Errorf("history row %d %q lacks %q", i, rows[i], want)
				}
			}
		}
	})

	t.Run("no HTML from values", func(t *testing.T) {
		goTo(t, ctx, recordHash(sp, recXSS), "record")
		got := eval[string](t, ctx, `document.querySelector('#fields tr[data-field="html"] td.value').textContent`)
		if got != xssValue {
			t.Errorf("value shown as %q, want the text %q", got, xssValue)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('#view img, #view script').length`); n != 0 {
			t.Errorf("a value became %d elements", n)
		}
		if eval[bool](t, ctx, `window.__pwned !== undefined`) {
			t.Error("a value ran script")
		}
	})

	t.Run("right to left", func(t *testing.T) {
		goTo(t, ctx, recordHash(sp, recRTL), "record")
		ar, en := `#fields tr[data-field="ar"] td.value`, `#fields tr[data-field="en"] td.value`
		for sel, want := range map[string]string{ar: "rtl", en: "ltr"} {
			if got := eval[string](t, ctx, fmt.Sprintf(`getComputedStyle(document.querySelector(%s)).direction`, js(sel))); got != want {
				t.Errorf("%s: direction %s, want %s", sel, got, want)
			}
		}
		// The ink of each value cell, on a screenshot: the Arabic text
		// starts at the cell's right edge, the Latin at its left.
		do(t, ctx, chromedp.ScrollIntoView("#fields"))
		img := screenshot(t, ctx)
		for _, c := range []struct {
			sel   string
			right bool
		}{{ar, true}, {en, false}} {
			r := rect(t, ctx, c.sel)
			left, right, ok := inkSpan(img, r)
			if !ok {
				t.Fatalf("%s: no ink in %v", c.sel, r)
			}
			gapL, gapR := left-r.Min.X, r.Max.X-right
			t.Logf("%s: cell %v, ink %d..%d (gaps %d left, %d right)", c.sel, r, left, right, gapL, gapR)
			near, far := gapL, gapR
			if c.right {
				near, far = gapR, gapL
			}
			if near > 16 || far < near+100 {
				t.Errorf("%s: ink %d..%d in cell %v: want it against the %s edge", c.sel, left, right, r, map[bool]string{true: "right", false: "left"}[c.right])
			}
		}
		shot(t, ctx, "record-rtl")
	})

	t.Run("live update", func(t *testing.T) {
		goTo(t, ctx, recordHash(sp, recRTL), "record")
		do(t, ctx, chromedp.Evaluate[chromedp.Void](`window.__sameDocument = 42; undefined`))
		if _, err := ca.RecordPut(context.Background(), api.RecordPutRequest{Space: sp, Record: recRTL, Fields: []api.FieldValue{{Name: "live", Value: "وصل للتو"}}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "the new field, pushed", `!!document.querySelector('#fields tr[data-field="live"]')`)
		if !eval[bool](t, ctx, `window.__sameDocument === 42`) {
			t.Error("the page was reloaded, not updated")
		}
	})

	t.Run("resolve", func(t *testing.T) {
		goTo(t, ctx, recordHash(sp, recConflict), "record")
		cs, err := ca.ConflictsShow(context.Background(), api.RecordRef{Space: sp, Record: recConflict})
		if err != nil || len(cs.Fields) != 1 {
			t.Fatalf("conflicts show: %+v %v", cs, err)
		}
		sibs := cs.Fields[0].Siblings
		cards := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('.conflict[data-field="village"] .sibling')).map(c => c.textContent)`)
		if len(cards) != len(sibs) {
			t.Fatalf("%d values side by side, the agent has %d", len(cards), len(sibs))
		}
		officers := map[string]bool{}
		pick := -1
		for i, s := range sibs {
			for _, want := range []string{s.Value, s.Officer, s.Bureau, s.Author, s.HLC} {
				if want == "" || !strings.Contains(cards[i], want) {
					t.Errorf("value %d %q lacks %q", i+1, cards[i], want)
				}
			}
			officers[s.Officer] = true
			if s.Value == "Aleppo" {
				pick = i
			}
		}
		if !officers[officerA] || !officers[officerB] || pick < 0 {
			t.Fatalf("not a two-device conflict: %+v", sibs)
		}
		shot(t, ctx, "conflict")
		reason := "confirmed by phone — أكد بالهاتف"
		card := fmt.Sprintf(`.conflict[data-field="village"] .sibling:nth-child(%d) input[type=radio]`, pick+1)
		do(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).click(); undefined`, js(card))), chromedp.SendKeys(`.conflict[data-field="village"] textarea.reason`, reason),
			chromedp.Click(`.conflict[data-field="village"] button.resolve`))
		waitFor(t, ctx, "the resolution shown", `!!document.querySelector('#resolved li[data-field="village"]') && !document.querySelector('.conflict[data-field="village"]')`)
		if got := eval[string](t, ctx, `document.querySelector('#resolved li[data-field="village"] .reason').textContent`); got != reason {
			t.Errorf("reason shown %q, want %q", got, reason)
		}
		rec, err := ca.RecordGet(context.Background(), api.RecordRef{Space: sp, Record: recConflict})
		if err != nil {
			t.Fatal(err)
		}
		if v := rec.Fields["village"]; v.Conflict || v.Value != "Aleppo" {
			t.Errorf("after resolving: %+v", v)
		}
		hist, err := ca.History(context.Background(), api.RecordRef{Space: sp, Record: recConflict})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range hist {
			for _, op := range e.Ops {
				if op.Kind == "resolve" && op.Field == "village" && op.Value == "Aleppo" && op.Reason == reason && len(op.Resolves) == 2 && e.Signature == "valid" {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no signed resolve with the reason in history: %+v", hist)
		}
	})
}

func screenshot(t *testing.T, ctx context.Context) image.Image {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// rect is an element's content box (inside border and padding), in
// viewport pixels.
func rect(t *testing.T, ctx context.Context, sel string) image.Rectangle {
	t.Helper()
	v := eval[[]float64](t, ctx, fmt.Sprintf(`(function(){const e=document.querySelector(%s); const r=e.getBoundingClientRect(); const s=getComputedStyle(e);
		const l=parseFloat(s.paddingLeft)+parseFloat(s.borderLeftWidth), rr=parseFloat(s.paddingRight)+parseFloat(s.borderRightWidth);
		const tp=parseFloat(s.paddingTop)+parseFloat(s.borderTopWidth), b=parseFloat(s.paddingBottom)+parseFloat(s.borderBottomWidth);
		return [r.left+l, r.top+tp, r.right-rr, r.bottom-b]})()`, js(sel)))
	return image.Rect(int(v[0]+0.5), int(v[1]+0.5), int(v[2]+0.5), int(v[3]+0.5))
}

// inkSpan is the leftmost and rightmost columns of r that hold a pixel
// unlike r's background (its top-left pixel).
func inkSpan(img image.Image, r image.Rectangle) (left, right int, ok bool) {
	bg := img.At(r.Min.X, r.Min.Y)
	br, bgc, bb, _ := bg.RGBA()
	left, right = r.Max.X, r.Min.X
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if absDiff(cr, br)+absDiff(cg, bgc)+absDiff(cb, bb) > 3*0x2000 {
				left, right, ok = min(left, x), max(right, x+1), true
			}
		}
	}
	return left, right, ok
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// shot writes a screenshot of the view to docs/ui/NAME.png under -docs.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !*writeDocs {
		return
	}
	do(t, ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0,0); undefined`))
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui", name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
