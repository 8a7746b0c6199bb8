package main

import (
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// rateIntervalSample stands in for $__rate_interval while parsing: a duration no one
// writes by hand, so a range equal to it came from the variable.
const rateIntervalSample = 7919*time.Second + 113*time.Millisecond

// Sample values of Grafana's global variables that may appear in a PromQL query.
var globalSamples = map[string]string{
	"__rate_interval": "7919113ms",
	"__interval":      "15s",
	"__interval_ms":   "15000",
	"__range":         "3600s",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
	"__from":          "1594671549254",
	"__to":            "1594675149254",
	"__auto":          "30s",
}

// $name, ${name}, ${name:format} and [[name]].
var variableRef = regexp.MustCompile(`\$([A-Za-z0-9_]+)|\$\{([^}:]+)(?::[^}]*)?\}|\[\[([^\[\]:]+)(?::[^\]]*)?\]\]`)

// ExpandVariables replaces Grafana variables outside PromQL string literals with sample
// values (globals) or the variable's own name (template variables, then read as a metric
// or label name), so that the query can be parsed. Inside strings they stay as written.
func ExpandVariables(expr string) string {
	var out strings.Builder
	var quote byte
	segment := 0
	flush := func(end int) {
		out.WriteString(variableRef.ReplaceAllStringFunc(expr[segment:end], func(ref string) string {
			m := variableRef.FindStringSubmatch(ref)
			name := m[1] + m[2] + m[3]
			if sample, ok := globalSamples[name]; ok {
				return sample
			}
			if strings.HasPrefix(name, "__auto_interval") {
				return "30s"
			}
			return name
		}))
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote == 0 && (c == '"' || c == '\'' || c == '`'):
			flush(i)
			quote, segment = c, i
		case quote != 0 && c == '\\' && quote != '`':
			i++
		case quote != 0 && c == quote:
			out.WriteString(expr[segment : i+1])
			quote, segment = 0, i+1
		}
	}
	if quote != 0 {
		out.WriteString(expr[segment:])
	} else {
		flush(len(expr))
	}
	return out.String()
}

// ParsePromQL parses a dashboard query with Prometheus's own parser.
func ParsePromQL(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(ExpandVariables(expr))
}

type visitor func(node parser.Node, path []parser.Node) error

func (f visitor) Visit(node parser.Node, path []parser.Node) (parser.Visitor, error) {
	if err := f(node, path); err != nil {
		return nil, err
	}
	return f, nil
}
