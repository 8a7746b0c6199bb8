package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The rules of Grafana's dashboard-linter (same names, same checks; its LogQL rules are
// left out, these dashboards have no Loki queries), plus dashboard-schema-rule and
// dashboard-uid-rule of our own. Each finding is an error unless the configuration
// downgrades it to a warning or excludes it, with a reason.

type Severity int

const (
	Warning Severity = iota
	Error
)

type Finding struct {
	Rule      string
	Severity  Severity
	Dashboard string
	Panel     string // empty for a dashboard finding
	TargetIdx int    // -1 for a dashboard or panel finding
	Message   string
}

type Rule struct {
	Name        string
	Description string
	Dashboard   func(d *Dashboard) []Finding
	Panel       func(d *Dashboard, p Panel) []string
	Target      func(d *Dashboard, p Panel, t Target) []string
}

// Lint runs every rule on the dashboard.
func Lint(d *Dashboard) []Finding {
	var out []Finding
	for _, rule := range Rules {
		if rule.Dashboard != nil {
			for _, f := range rule.Dashboard(d) {
				f.Rule, f.Dashboard, f.TargetIdx = rule.Name, d.Title(), -1
				out = append(out, f)
			}
		}
		for _, p := range d.Panels() {
			if rule.Panel != nil {
				for _, msg := range rule.Panel(d, p) {
					out = append(out, Finding{rule.Name, Error, d.Title(), p.Title, -1, msg})
				}
			}
			if rule.Target != nil {
				for _, t := range p.Targets {
					for _, msg := range rule.Target(d, p, t) {
						out = append(out, Finding{rule.Name, Error, d.Title(), p.Title, t.Idx, msg})
					}
				}
			}
		}
	}
	return out
}

func errorf(format string, args ...any) Finding {
	return Finding{Severity: Error, Message: fmt.Sprintf(format, args...)}
}

func warnf(format string, args ...any) Finding {
	return Finding{Severity: Warning, Message: fmt.Sprintf(format, args...)}
}

var (
	// Panel types whose queries and units dashboard-linter checks.
	graphPanels = []string{"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
	queryPanels = []string{"singlestat", "gauge", "table", "stat", "state-timeline", "timeseries"}
	// The data source variable's name and label, one Prometheus source (as dashboard-linter).
	titleCase = func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	uidFormat = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)
	// label_values(), label_names(), metrics() or query_result() of a query variable.
	variableFunction = regexp.MustCompile(`^\s*([a-z_]+)\((.*)\)\s*$`)
)

var Rules = []Rule{
	{
		Name:        "dashboard-schema-rule",
		Description: "Checks that the dashboard decodes strictly (no unknown or missing fields) into the Grafana Foundation SDK's types and has their schemaVersion.",
		Dashboard: func(d *Dashboard) []Finding {
			var out []Finding
			if d.Strict != nil {
				for _, line := range strings.Split(strings.TrimSpace(d.Strict.Error()), "\n") {
					out = append(out, errorf("does not match Grafana's current schema: %s", line))
				}
			}
			if d.Model.SchemaVersion != CurrentSchemaVersion {
				out = append(out, errorf("has schemaVersion %d, Grafana's current schema is %d", d.Model.SchemaVersion, CurrentSchemaVersion))
			}
			return out
		},
	},
	{
		Name:        "dashboard-uid-rule",
		Description: "Checks that the dashboard has a fixed uid (at most 40 letters, digits, '-' or '_') so links to it survive a re-import, and no database id.",
		Dashboard: func(d *Dashboard) []Finding {
			var out []Finding
			if uid := str(d.Model.Uid); !uidFormat.MatchString(uid) {
				out = append(out, errorf("has uid '%s', should be 1-40 letters, digits, '-' or '_'", uid))
			}
			if d.Model.Id != nil {
				out = append(out, errorf("has id %d, a provisioned dashboard should have none (null)", *d.Model.Id))
			}
			return out
		},
	},
	{
		Name:        "template-datasource-rule",
		Description: "Checks that the dashboard has a templated datasource.",
		Dashboard: func(d *Dashboard) []Finding {
			sources := d.VariablesOfType("datasource")
			if len(sources) == 0 {
				return []Finding{errorf("does not have a templated data source")}
			}
			var out []Finding
			for _, v := range sources {
				names := []string{strings.ToLower(v.Query) + "_datasource"}
				labels := []string{titleCase(v.Query) + " data source"}
				if len(sources) == 1 {
					names = append(names, "datasource")
					labels = append(labels, "Data source")
				}
				if !slices.Contains(names, v.Name) {
					out = append(out, errorf("templated data source variable named '%s', should be named '%s'", v.Name, strings.Join(names, "' or '")))
				}
				if !slices.Contains(labels, v.Label) {
					out = append(out, warnf("templated data source variable labeled '%s', should be labeled '%s'", v.Label, strings.Join(labels, "' or '")))
				}
			}
			return out
		},
	},
	{
		Name:        "template-job-rule",
		Description: "Checks that the dashboard has a templated job.",
		Dashboard:   func(d *Dashboard) []Finding { return checkTemplate(d, "job") },
	},
	{
		Name:        "template-instance-rule",
		Description: "Checks that the dashboard has a templated instance.",
		Dashboard:   func(d *Dashboard) []Finding { return checkTemplate(d, "instance") },
	},
	{
		Name:        "template-label-promql-rule",
		Description: "Checks that the dashboard templated labels have proper PromQL expressions.",
		Dashboard: func(d *Dashboard) []Finding {
			if d.PrometheusDatasource() == nil {
				return nil
			}
			var out []Finding
			for _, v := range d.VariablesOfType("query") {
				m := variableFunction.FindStringSubmatch(v.Query)
				switch {
				case m == nil:
					out = append(out, errorf("template '%s' invalid templated label '%s': not a function call", v.Name, v.Query))
				case !slices.Contains([]string{"label_names", "label_values", "metrics", "query_result"}, m[1]):
					out = append(out, errorf("template '%s' invalid templated label '%s': invalid function '%s'", v.Name, v.Query, m[1]))
				case m[1] == "label_values":
					// label_values(label) or label_values(selector, label)
					args := m[2]
					if i := strings.LastIndex(args, ","); i >= 0 {
						if _, err := ParsePromQL(args[:i]); err != nil {
							out = append(out, errorf("template '%s' invalid templated label '%s': %v", v.Name, v.Query, err))
						}
						args = args[i+1:]
					}
					if !labelName.MatchString(strings.TrimSpace(args)) {
						out = append(out, errorf("template '%s' invalid templated label '%s': '%s' is not a label name", v.Name, v.Query, strings.TrimSpace(args)))
					}
				case m[1] == "query_result" || (m[1] != "metrics" && m[2] != ""):
					if _, err := ParsePromQL(m[2]); err != nil {
						out = append(out, errorf("template '%s' invalid templated label '%s': %v", v.Name, v.Query, err))
					}
				}
			}
			return out
		},
	},
	{
		Name:        "template-on-time-change-reload-rule",
		Description: "Checks that the dashboard template variables are configured to reload on time change.",
		Dashboard: func(d *Dashboard) []Finding {
			var out []Finding
			for _, v := range d.VariablesOfType("query") {
				if v.Refresh != 2 {
					out = append(out, errorf("templated datasource variable named '%s', should be set to be refreshed 'On Time Range Change (value 2)', is currently '%d'", v.Name, v.Refresh))
				}
			}
			return out
		},
	},
	{
		Name:        "uneditable-dashboard",
		Description: "Checks that the dashboard is not editable.",
		Dashboard: func(d *Dashboard) []Finding {
			if d.Model.Editable == nil || *d.Model.Editable {
				// Grafana's default is editable: only an explicit false counts.
				return []Finding{errorf("is editable, it should be set to 'editable: false'")}
			}
			return nil
		},
	},
	{
		Name:        "panel-datasource-rule",
		Description: "Checks that each panel uses the templated datasource.",
		Panel: func(d *Dashboard, p Panel) []string {
			if !slices.Contains([]string{"singlestat", "graph", "table", "timeseries"}, p.Type) {
				return nil
			}
			uid := ""
			if p.Datasource != nil {
				uid = str(p.Datasource.Uid)
			}
			for _, v := range d.VariablesOfType("datasource") {
				if uid == "$"+v.Name || uid == "${"+v.Name+"}" {
					return nil
				}
			}
			return []string{fmt.Sprintf("does not use a templated datasource, uses '%s'", uid)}
		},
	},
	{
		Name:        "panel-title-description-rule",
		Description: "Checks that each panel has a title and description.",
		Panel: func(d *Dashboard, p Panel) []string {
			if slices.Contains(graphPanels, p.Type) && (p.Title == "" || p.Description == "") {
				return []string{fmt.Sprintf("has missing title or description, currently has title '%s' and description: '%s'", p.Title, p.Description)}
			}
			return nil
		},
	},
	{
		Name:        "panel-units-rule",
		Description: "Checks that each panel uses has valid units defined.",
		Panel: func(d *Dashboard, p Panel) []string {
			if !slices.Contains(graphPanels, p.Type) || hasValueMappings(p) {
				return nil
			}
			unit := configuredUnit(p)
			if slices.Contains(validUnits, unit) {
				return nil
			}
			return []string{fmt.Sprintf("has no or invalid units defined: '%s'", unit)}
		},
	},
	{
		Name:        "panel-no-targets-rule",
		Description: "Checks that each panel has at least one target.",
		Panel: func(d *Dashboard, p Panel) []string {
			if slices.Contains(graphPanels, p.Type) && len(p.Targets) == 0 {
				return []string{"has no targets"}
			}
			return nil
		},
	},
	{
		Name:        "target-promql-rule",
		Description: "Checks that each target uses a valid PromQL query.",
		Target: func(d *Dashboard, p Panel, t Target) []string {
			if d.PrometheusDatasource() == nil || !slices.Contains(queryPanels, p.Type) {
				return nil
			}
			if _, err := ParsePromQL(t.Expr); err != nil {
				return []string{fmt.Sprintf("invalid PromQL query '%s': %v", t.Expr, err)}
			}
			return nil
		},
	},
	{
		Name:        "target-rate-interval-rule",
		Description: "Checks that each target uses $__rate_interval.",
		Target: func(d *Dashboard, p Panel, t Target) []string {
			if d.PrometheusDatasource() == nil || !slices.Contains(queryPanels, p.Type) {
				return nil
			}
			expr, err := ParsePromQL(t.Expr)
			if err != nil {
				return nil // target-promql-rule reports it
			}
			err = parser.Walk(visitor(func(node parser.Node, path []parser.Node) error {
				matrix, ok := node.(*parser.MatrixSelector)
				if !ok || matrix.Range == rateIntervalSample || len(path) == 0 {
					return nil
				}
				call, ok := path[len(path)-1].(*parser.Call)
				if !ok {
					return fmt.Errorf("invalid PromQL query '%s': $__rate_interval used in non-rate function", t.Expr)
				}
				if call.Func.Name == "rate" || call.Func.Name == "irate" {
					return fmt.Errorf("invalid PromQL query '%s': should use $__rate_interval", t.Expr)
				}
				return nil
			}), expr, nil)
			if err != nil {
				return []string{err.Error()}
			}
			return nil
		},
	},
	{
		Name:        "target-job-rule",
		Description: "Checks that every PromQL query has a job matcher.",
		Target:      func(d *Dashboard, p Panel, t Target) []string { return requiredMatcher(d, t, "job") },
	},
	{
		Name:        "target-instance-rule",
		Description: "Checks that every PromQL query has a instance matcher.",
		Target:      func(d *Dashboard, p Panel, t Target) []string { return requiredMatcher(d, t, "instance") },
	},
	{
		Name:        "target-counter-agg-rule",
		Description: "Checks that any counter metric (ending in _total) is aggregated with rate, irate, or increase.",
		Target: func(d *Dashboard, p Panel, t Target) []string {
			expr, err := ParsePromQL(t.Expr)
			if err != nil {
				return nil
			}
			err = parser.Walk(visitor(func(node parser.Node, path []parser.Node) error {
				selector, ok := node.(*parser.VectorSelector)
				if !ok || !strings.HasSuffix(selector.Name, "_total") {
					return nil
				}
				failure := fmt.Errorf("counter metric '%s' is not aggregated with rate, irate, or increase", selector)
				if len(path) < 2 {
					return failure
				}
				if _, ok := path[len(path)-1].(*parser.MatrixSelector); !ok {
					return failure
				}
				call, ok := path[len(path)-2].(*parser.Call)
				if !ok || !slices.Contains([]string{"rate", "irate", "increase"}, call.Func.Name) {
					return failure
				}
				return nil
			}), expr, nil)
			if err != nil {
				return []string{err.Error()}
			}
			return nil
		},
	},
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkTemplate: the dashboard has a multi-select query variable NAME on the templated
// Prometheus data source whose "All" matches any value (dashboard-linter's job/instance rules).
func checkTemplate(d *Dashboard, name string) []Finding {
	if d.PrometheusDatasource() == nil {
		return nil
	}
	var v *Variable
	for _, candidate := range d.Variables() {
		if candidate.Name == name {
			v = &candidate
			break
		}
	}
	if v == nil {
		return []Finding{errorf("is missing the %s template", name)}
	}
	var out []Finding
	uid := ""
	if v.Datasource != nil {
		uid = str(v.Datasource.Uid)
	}
	if !slices.Contains([]string{"$datasource", "${datasource}", "$prometheus_datasource", "${prometheus_datasource}"}, uid) {
		out = append(out, errorf("%s template should use datasource '$datasource', is currently '%s'", name, uid))
	}
	if v.Type != "query" {
		out = append(out, errorf("%s template should be a Prometheus query, is currently '%s'", name, v.Type))
	}
	if v.Label != titleCase(name) {
		out = append(out, warnf("%s template should be a labeled '%s', is currently '%s'", name, titleCase(name), v.Label))
	}
	if !v.Multi {
		out = append(out, errorf("%s template should be a multi select", name))
	}
	if v.AllValue != ".+" {
		out = append(out, errorf("%s template allValue should be '.+', is currently '%s'", name, v.AllValue))
	}
	return out
}

// requiredMatcher: every selector of the query has label=~"$label".
func requiredMatcher(d *Dashboard, t Target, label string) []string {
	if d.PrometheusDatasource() == nil {
		return nil
	}
	expr, err := ParsePromQL(t.Expr)
	if err != nil {
		return nil
	}
	var out []string
	for _, selector := range parser.ExtractSelectors(expr) {
		problem := fmt.Sprintf("%s selector not found", label)
		for _, m := range selector {
			if m.Name != label {
				continue
			}
			if m.Type == labels.MatchRegexp && m.Value == "$"+label {
				problem = ""
				break
			}
			problem = fmt.Sprintf("%s selector is %s%s%q, not =~\"$%s\"", label, label, m.Type, m.Value, label)
		}
		if problem != "" {
			out = append(out, fmt.Sprintf("invalid PromQL query '%s': %s", t.Expr, problem))
		}
	}
	return out
}

// The unit of the panel: a "unit" override first, else the default's.
func configuredUnit(p Panel) string {
	if p.FieldConfig == nil {
		return ""
	}
	for _, override := range p.FieldConfig.Overrides {
		for _, property := range override.Properties {
			if unit, ok := property.Value.(string); ok && property.Id == "unit" {
				return unit
			}
		}
	}
	return str(p.FieldConfig.Defaults.Unit)
}

// A panel that maps values to text needs no unit. Unlike dashboard-linter, an empty
// list of mappings ("mappings": [], what Grafana writes by default) does not count.
func hasValueMappings(p Panel) bool {
	if p.FieldConfig == nil {
		return false
	}
	for _, override := range p.FieldConfig.Overrides {
		for _, property := range override.Properties {
			if list, ok := property.Value.([]any); property.Id == "mappings" && ok && len(list) > 0 {
				return true
			}
		}
	}
	return len(p.FieldConfig.Defaults.Mappings) > 0
}
