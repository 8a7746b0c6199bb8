// Command dashlint lints Grafana dashboards with the rules of Grafana's dashboard-linter
// (github.com/grafana/dashboard-linter, which the Go module proxy here does not serve),
// re-implemented on Grafana's own types (the Grafana Foundation SDK) and Prometheus's
// own PromQL parser.
//
//	dashlint [-config FILE] [-strict] [-verbose] DASHBOARD.json...
//	dashlint rules
//
// The configuration defaults to the `.lint` file beside the first dashboard (the format
// of dashboard-linter's, every exception with its reason). Exit status 1 on an error
// finding, a warning under -strict, an exception that matches nothing, or a bad config.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("dashlint", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "configuration file (default: .lint beside the first dashboard)")
	strict := flags.Bool("strict", false, "fail on warnings too")
	verbose := flags.Bool("verbose", false, "also print the excluded findings, with their reasons")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	files := flags.Args()
	if len(files) == 1 && files[0] == "rules" {
		for _, rule := range Rules {
			fmt.Fprintf(stdout, "%s\t%s\n", rule.Name, rule.Description)
		}
		return 0
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: dashlint [-config FILE] [-strict] [-verbose] DASHBOARD.json... | dashlint rules")
		return 2
	}
	if *configPath == "" {
		*configPath = filepath.Join(filepath.Dir(files[0]), ".lint")
	}
	config, err := LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	errors, warnings, excluded := 0, 0, 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		dashboard, err := Load(file, raw)
		if err != nil {
			fmt.Fprintln(stderr, err)
			errors++
			continue
		}
		for _, f := range Lint(dashboard) {
			switch {
			case config.Excluded(f):
				excluded++
				if *verbose {
					fmt.Fprintf(stdout, "[excluded] %s\n", format(file, f))
				}
			case f.Severity == Warning || config.Downgraded(f):
				warnings++
				fmt.Fprintf(stdout, "[warning] %s\n", format(file, f))
			default:
				errors++
				fmt.Fprintf(stdout, "[error] %s\n", format(file, f))
			}
		}
	}
	unused := config.Unused()
	sort.Strings(unused)
	for _, line := range unused {
		fmt.Fprintf(stdout, "[error] %s: %s\n", *configPath, line)
	}
	errors += len(unused)
	fmt.Fprintf(stdout, "dashlint: %d dashboards, %d errors, %d warnings, %d excluded\n", len(files), errors, warnings, excluded)
	if errors > 0 || (*strict && warnings > 0) {
		return 1
	}
	return 0
}

func format(file string, f Finding) string {
	where := fmt.Sprintf("%s: dashboard '%s'", filepath.Base(file), f.Dashboard)
	if f.Panel != "" || f.TargetIdx >= 0 {
		where += fmt.Sprintf(", panel '%s'", f.Panel)
	}
	if f.TargetIdx >= 0 {
		where += fmt.Sprintf(", target %d", f.TargetIdx)
	}
	return fmt.Sprintf("%s: %s %s", f.Rule, where, f.Message)
}
