package main

//go:generate go run gen_units.go

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

func init() {
	// Panel options, field configs and data queries decode into the types of their plugin
	// (stat, timeseries, prometheus...), so strict decoding checks them too.
	plugins.RegisterDefaultPlugins()
}

// CurrentSchemaVersion is the schemaVersion of the dashboards the Grafana Foundation SDK
// builds: Grafana's current dashboard schema, whose Go types this tool decodes into.
var CurrentSchemaVersion = dashboard.NewDashboard().SchemaVersion

// Dashboard is one dashboard file decoded into Grafana's own types.
type Dashboard struct {
	File   string
	Model  dashboard.Dashboard
	Strict error // non-nil when the file does not decode strictly into the current schema
}

// Panel is a panel of the dashboard, rows flattened (a row's own entry comes first).
type Panel struct {
	Type        string
	Title       string
	Description string
	Datasource  *common.DataSourceRef
	FieldConfig *dashboard.FieldConfigSource
	Targets     []Target
}

// Target is one query of a panel; Expr is empty for queries that are not PromQL.
type Target struct {
	Idx        int
	Expr       string
	Prometheus bool
}

// Variable is a template variable with the fields the rules read.
type Variable struct {
	Name       string
	Label      string
	Type       string
	Query      string
	Datasource *common.DataSourceRef
	Multi      bool
	AllValue   string
	Refresh    int64
}

func Load(file string, raw []byte) (*Dashboard, error) {
	d := &Dashboard{File: file}
	if err := json.Unmarshal(raw, &d.Model); err != nil {
		return nil, fmt.Errorf("%s: not a dashboard: %w", file, err)
	}
	var strict dashboard.Dashboard
	err := strict.UnmarshalJSONStrict(raw)
	// The SDK returns its error list as an error even when the list is empty.
	if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
		d.Strict = err
	}
	if err := strictFieldConfigs(raw); err != nil {
		d.Strict = errors.Join(d.Strict, err)
	}
	return d, nil
}

// strictFieldConfigs: the SDK's strict decoder reads a panel's fieldConfig leniently
// (only its "custom" part is plugin-specific); decode each one with unknown fields refused.
func strictFieldConfigs(raw []byte) error {
	type panel struct {
		FieldConfig json.RawMessage `json:"fieldConfig"`
		Panels      []panel         `json:"panels"`
	}
	var top struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	var errs []error
	var walk func(path string, panels []panel)
	walk = func(path string, panels []panel) {
		for i, p := range panels {
			where := fmt.Sprintf("%s[%d]", path, i)
			if len(p.FieldConfig) > 0 {
				decoder := json.NewDecoder(bytes.NewReader(p.FieldConfig))
				decoder.DisallowUnknownFields()
				var config dashboard.FieldConfigSource
				if err := decoder.Decode(&config); err != nil {
					errs = append(errs, fmt.Errorf("%s.fieldConfig: %w", where, err))
				}
			}
			walk(where+".panels", p.Panels)
		}
	}
	walk("panels", top.Panels)
	return errors.Join(errs...)
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (d *Dashboard) Title() string { return str(d.Model.Title) }

func (d *Dashboard) Panels() []Panel {
	var out []Panel
	for _, item := range d.Model.Panels {
		if item.RowPanel != nil {
			row := item.RowPanel
			out = append(out, Panel{Type: row.Type, Title: str(row.Title), Datasource: row.Datasource})
			for i := range row.Panels {
				out = append(out, toPanel(&row.Panels[i]))
			}
		}
		if item.Panel != nil {
			out = append(out, toPanel(item.Panel))
		}
	}
	return out
}

func toPanel(p *dashboard.Panel) Panel {
	panel := Panel{
		Type: p.Type, Title: str(p.Title), Description: str(p.Description),
		Datasource: p.Datasource, FieldConfig: p.FieldConfig,
	}
	for i, query := range p.Targets {
		target := Target{Idx: i}
		if q, ok := query.(*prometheus.Dataquery); ok {
			target.Expr, target.Prometheus = q.Expr, true
		} else if raw, err := json.Marshal(query); err == nil {
			// A query of another (or no) datasource type: read its expr, if any.
			var generic struct {
				Expr string `json:"expr"`
			}
			_ = json.Unmarshal(raw, &generic)
			target.Expr = generic.Expr
		}
		panel.Targets = append(panel.Targets, target)
	}
	if p.Targets == nil {
		panel.Targets = nil
	}
	return panel
}

func (d *Dashboard) Variables() []Variable {
	var out []Variable
	for _, v := range d.Model.Templating.List {
		variable := Variable{
			Name: v.Name, Label: str(v.Label), Type: string(v.Type),
			Datasource: v.Datasource, AllValue: str(v.AllValue),
		}
		if v.Multi != nil {
			variable.Multi = *v.Multi
		}
		if v.Refresh != nil {
			variable.Refresh = int64(*v.Refresh)
		}
		if v.Query != nil {
			if v.Query.String != nil {
				variable.Query = *v.Query.String
			} else if q, ok := v.Query.Map["query"].(string); ok {
				variable.Query = q
			}
		}
		out = append(out, variable)
	}
	return out
}

func (d *Dashboard) VariablesOfType(t string) []Variable {
	var out []Variable
	for _, v := range d.Variables() {
		if v.Type == t {
			out = append(out, v)
		}
	}
	return out
}

// PrometheusDatasource is the dashboard's first datasource variable when it selects
// Prometheus data sources; the PromQL rules apply only then (as in dashboard-linter).
func (d *Dashboard) PrometheusDatasource() *Variable {
	for _, v := range d.VariablesOfType("datasource") {
		if v.Query == "prometheus" {
			return &v
		}
		return nil
	}
	return nil
}
