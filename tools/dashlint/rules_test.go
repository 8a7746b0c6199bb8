package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// good.json passes every rule; each case breaks one thing and expects its rule to fire.

type object = map[string]any

func goodDashboard(t *testing.T) object {
	t.Helper()
	raw, err := os.ReadFile("testdata/good.json")
	if err != nil {
		t.Fatal(err)
	}
	var d object
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func lint(t *testing.T, d object) []Finding {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := Load("test.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	return Lint(dashboard)
}

func rulesOf(findings []Finding) []string {
	var names []string
	for _, f := range findings {
		if !slices.Contains(names, f.Rule) {
			names = append(names, f.Rule)
		}
	}
	return names
}

func variable(d object, name string) object {
	for _, v := range d["templating"].(object)["list"].([]any) {
		if v.(object)["name"] == name {
			return v.(object)
		}
	}
	panic(name)
}

func removeVariable(d object, name string) {
	list := d["templating"].(object)["list"].([]any)
	d["templating"].(object)["list"] = slices.DeleteFunc(list, func(v any) bool { return v.(object)["name"] == name })
}

func panel(d object, kind string) object {
	for _, p := range d["panels"].([]any) {
		if p.(object)["type"] == kind {
			return p.(object)
		}
	}
	panic(kind)
}

func target(d object, kind string) object {
	return panel(d, kind)["targets"].([]any)[0].(object)
}

func setExpr(d object, kind, expr string) { target(d, kind)["expr"] = expr }

func TestGoodDashboardPassesEveryRule(t *testing.T) {
	if findings := lint(t, goodDashboard(t)); len(findings) > 0 {
		t.Fatalf("findings on good.json: %+v", findings)
	}
}

func TestEveryRuleFires(t *testing.T) {
	const sel = `job=~"$job", instance=~"$instance"`
	cases := []struct {
		rule, name string
		mutate     func(d object)
	}{
		{"dashboard-schema-rule", "export-only field", func(d object) { d["__inputs"] = []any{} }},
		{"dashboard-schema-rule", "old schemaVersion", func(d object) { d["schemaVersion"] = 39 }},
		{"dashboard-schema-rule", "stat options of an old Grafana", func(d object) { delete(panel(d, "stat")["options"].(object), "wideLayout") }},
		{"dashboard-schema-rule", "unknown fieldConfig field", func(d object) { panel(d, "stat")["fieldConfig"].(object)["defaults"].(object)["colour"] = "red" }},
		{"dashboard-uid-rule", "no uid", func(d object) { delete(d, "uid") }},
		{"dashboard-uid-rule", "database id", func(d object) { d["id"] = 7 }},
		{"template-datasource-rule", "no datasource variable", func(d object) { removeVariable(d, "datasource") }},
		{"template-datasource-rule", "badly named", func(d object) { variable(d, "datasource")["name"] = "ds" }},
		{"template-job-rule", "no job variable", func(d object) { removeVariable(d, "job") }},
		{"template-job-rule", "single select", func(d object) { variable(d, "job")["multi"] = false }},
		{"template-instance-rule", "allValue .*", func(d object) { variable(d, "instance")["allValue"] = ".*" }},
		{"template-instance-rule", "fixed data source", func(d object) {
			variable(d, "instance")["datasource"] = object{"type": "prometheus", "uid": "prom"}
		}},
		{"template-label-promql-rule", "broken selector", func(d object) {
			variable(d, "instance")["query"].(object)["query"] = `label_values(up{job=~}, instance)`
		}},
		{"template-label-promql-rule", "unknown function", func(d object) {
			variable(d, "instance")["query"].(object)["query"] = `values(up, instance)`
		}},
		{"template-on-time-change-reload-rule", "refresh on load", func(d object) { variable(d, "job")["refresh"] = 1 }},
		{"uneditable-dashboard", "editable", func(d object) { d["editable"] = true }},
		{"uneditable-dashboard", "editable by default", func(d object) { delete(d, "editable") }},
		{"panel-datasource-rule", "fixed data source", func(d object) {
			panel(d, "timeseries")["datasource"] = object{"type": "prometheus", "uid": "prom"}
		}},
		{"panel-title-description-rule", "no description", func(d object) { delete(panel(d, "stat"), "description") }},
		{"panel-units-rule", "no unit", func(d object) { delete(panel(d, "stat")["fieldConfig"].(object)["defaults"].(object), "unit") }},
		{"panel-units-rule", "unknown unit", func(d object) {
			panel(d, "timeseries")["fieldConfig"].(object)["defaults"].(object)["unit"] = "furlongs"
		}},
		{"panel-no-targets-rule", "no targets", func(d object) { delete(panel(d, "timeseries"), "targets") }},
		{"target-promql-rule", "unbalanced", func(d object) { setExpr(d, "stat", `sum(rate(http_requests_total{`+sel+`}[$__rate_interval])`) }},
		{"target-rate-interval-rule", "fixed range", func(d object) { setExpr(d, "stat", `sum(rate(http_requests_total{`+sel+`}[5m]))`) }},
		{"target-rate-interval-rule", "$__interval", func(d object) { setExpr(d, "timeseries", `sum(irate(http_requests_total{`+sel+`}[$__interval]))`) }},
		{"target-job-rule", "no job matcher", func(d object) {
			setExpr(d, "stat", `sum(rate(http_requests_total{instance=~"$instance"}[$__rate_interval]))`)
		}},
		{"target-instance-rule", "exact match", func(d object) {
			setExpr(d, "stat", `sum(rate(http_requests_total{job=~"$job", instance="$instance"}[$__rate_interval]))`)
		}},
		{"target-counter-agg-rule", "summed counter", func(d object) { setExpr(d, "stat", `sum(http_requests_total{`+sel+`})`) }},
		{"target-counter-agg-rule", "counter in delta", func(d object) { setExpr(d, "stat", `sum(delta(http_requests_total{`+sel+`}[$__rate_interval]))`) }},
	}
	fired := map[string]bool{}
	for _, c := range cases {
		t.Run(c.rule+"/"+c.name, func(t *testing.T) {
			d := goodDashboard(t)
			c.mutate(d)
			if rules := rulesOf(lint(t, d)); !slices.Contains(rules, c.rule) {
				t.Fatalf("%s did not fire (fired: %v)", c.rule, rules)
			}
			fired[c.rule] = true
		})
	}
	for _, rule := range Rules {
		if !fired[rule.Name] {
			t.Errorf("no case makes %s fire", rule.Name)
		}
	}
}

func TestWhatTheRulesAllow(t *testing.T) {
	const sel = `job=~"$job", instance=~"$instance"`
	cases := []struct {
		name   string
		mutate func(d object)
	}{
		{"increase over the dashboard's range", func(d object) { setExpr(d, "stat", `sum(increase(http_requests_total{`+sel+`}[$__range]))`) }},
		{"max_over_time over a fixed range", func(d object) { setExpr(d, "stat", `max(max_over_time(up{`+sel+`}[1h]))`) }},
		{"variables inside strings are kept", func(d object) {
			setExpr(d, "stat", `sum(rate(http_requests_total{`+sel+`, path="${path:regex}"}[$__rate_interval]))`)
		}},
		{"a variable as the metric name", func(d object) { setExpr(d, "stat", `sum(rate(${metric}{`+sel+`}[$__rate_interval]))`) }},
		{"label_values(label)", func(d object) { variable(d, "job")["query"].(object)["query"] = "label_values(job)" }},
		{"query_result()", func(d object) {
			variable(d, "instance")["query"].(object)["query"] = `query_result(topk(5, sum by (instance) (up{job=~"$job"})))`
		}},
		{"value mappings instead of a unit", func(d object) {
			defaults := panel(d, "stat")["fieldConfig"].(object)["defaults"].(object)
			delete(defaults, "unit")
			defaults["mappings"] = []any{object{"type": "value", "options": object{"1": object{"text": "up"}}}}
		}},
		{"a unit override", func(d object) {
			fc := panel(d, "stat")["fieldConfig"].(object)
			delete(fc["defaults"].(object), "unit")
			fc["overrides"] = []any{object{"matcher": object{"id": "byName", "options": "A"}, "properties": []any{object{"id": "unit", "value": "s"}}}}
		}},
		{"${datasource} or $datasource", func(d object) { panel(d, "timeseries")["datasource"].(object)["uid"] = "$datasource" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := goodDashboard(t)
			c.mutate(d)
			if findings := lint(t, d); len(findings) > 0 {
				t.Fatalf("unexpected findings: %+v", findings)
			}
		})
	}
}

func TestExpandVariables(t *testing.T) {
	got := ExpandVariables(`rate(x{a="$a", b='${b}'}[$__rate_interval]) / $__range_s + [[c]] + ${d:csv}`)
	want := `rate(x{a="$a", b='${b}'}[7919113ms]) / 3600 + c + d`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), ".lint")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runOn(t *testing.T, d object, config string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	raw, _ := json.Marshal(d)
	file := filepath.Join(dir, "d.json")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run([]string{"-strict", "-config", writeConfig(t, config), file}, &out, &out)
	return code, out.String()
}

func TestConfigExclusions(t *testing.T) {
	noDescription := func() object {
		d := goodDashboard(t)
		delete(panel(d, "stat"), "description")
		return d
	}
	if code, out := runOn(t, noDescription(), ""); code != 1 || !strings.Contains(out, "[error] panel-title-description-rule") {
		t.Fatalf("finding not reported: %d %s", code, out)
	}
	excluded := "exclusions:\n  panel-title-description-rule:\n    reason: test\n    entries:\n      - dashboard: Test dashboard\n        panel: Requests/s\n"
	if code, out := runOn(t, noDescription(), excluded); code != 0 {
		t.Fatalf("exclusion not applied: %s", out)
	}
	if code, out := runOn(t, noDescription(), strings.Replace(excluded, "panel: Requests/s", "panel: Other", 1)); code != 1 || !strings.Contains(out, "matches no finding") {
		t.Fatalf("an entry for another panel excluded the finding or was not reported unused: %s", out)
	}
	if code, out := runOn(t, goodDashboard(t), "exclusions:\n  target-job-rule:\n    reason: stale\n"); code != 1 || !strings.Contains(out, "exclusions.target-job-rule matches no finding") {
		t.Fatalf("unused exclusion not reported: %s", out)
	}
	if code, out := runOn(t, noDescription(), "exclusions:\n  panel-title-description-rule:\n"); code != 1 || !strings.Contains(out, "no reason given") {
		t.Fatalf("exclusion without a reason accepted: %s", out)
	}
	if code, out := runOn(t, goodDashboard(t), "exclusions:\n  no-such-rule:\n    reason: x\n"); code != 1 || !strings.Contains(out, "unknown rule") {
		t.Fatalf("unknown rule accepted: %s", out)
	}
	warned := "warnings:\n  panel-title-description-rule:\n    reason: test\n"
	if code, out := runOn(t, noDescription(), warned); code != 1 || !strings.Contains(out, "[warning] panel-title-description-rule") {
		t.Fatalf("warning not reported or -strict ignored: %s", out)
	}
}
