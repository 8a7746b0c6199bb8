package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Config is dashboard-linter's `.lint` file: per rule, exclusions and warnings, each
// for every finding of the rule or for listed (dashboard, panel, targetIdx) entries.
// Here every exception must give its reason, name a known rule, and still match a
// finding: an exclusion that no longer excludes anything is reported, so it is removed.
type Config struct {
	Exclusions map[string]*RuleEntries `yaml:"exclusions"`
	Warnings   map[string]*RuleEntries `yaml:"warnings"`
}

type RuleEntries struct {
	Reason  string   `yaml:"reason"`
	Entries []*Entry `yaml:"entries"`
	used    bool
}

type Entry struct {
	Reason    string `yaml:"reason"`
	Dashboard string `yaml:"dashboard"`
	Panel     string `yaml:"panel"`
	TargetIdx string `yaml:"targetIdx"`
	used      bool
}

func LoadConfig(path string) (*Config, error) {
	config := &Config{}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return config, nil
	} else if err != nil {
		return nil, err
	}
	decoder := yaml.NewDecoder(bytes.NewReader(raw))
	decoder.KnownFields(true)
	if err := decoder.Decode(config); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var problems []error
	for kind, rules := range map[string]map[string]*RuleEntries{"exclusions": config.Exclusions, "warnings": config.Warnings} {
		for name, rule := range rules {
			if !knownRule(name) {
				problems = append(problems, fmt.Errorf("%s: %s: unknown rule %q", path, kind, name))
				continue
			}
			if rule == nil || rule.Reason == "" {
				for _, entry := range entriesOf(rule) {
					if entry.Reason == "" {
						problems = append(problems, fmt.Errorf("%s: %s.%s: an entry without a reason (give the rule's or the entry's)", path, kind, name))
					}
				}
				if len(entriesOf(rule)) == 0 {
					problems = append(problems, fmt.Errorf("%s: %s.%s: no reason given", path, kind, name))
				}
			}
			for _, entry := range entriesOf(rule) {
				if _, err := strconv.Atoi(entry.TargetIdx); entry.TargetIdx != "" && err != nil {
					problems = append(problems, fmt.Errorf("%s: %s.%s: targetIdx %q is not a number", path, kind, name, entry.TargetIdx))
				}
			}
		}
	}
	return config, errors.Join(problems...)
}

func entriesOf(rule *RuleEntries) []*Entry {
	if rule == nil {
		return nil
	}
	return rule.Entries
}

func knownRule(name string) bool {
	for _, rule := range Rules {
		if rule.Name == name {
			return true
		}
	}
	return false
}

func (e *Entry) matches(f Finding) bool {
	if e.Dashboard != "" && e.Dashboard != f.Dashboard {
		return false
	}
	if e.Panel != "" && e.Panel != f.Panel {
		return false
	}
	if e.TargetIdx != "" && strconv.Itoa(f.TargetIdx) != e.TargetIdx {
		return false
	}
	return true
}

// match marks and reports whether the rule's exceptions cover the finding.
func match(rules map[string]*RuleEntries, f Finding) bool {
	rule, ok := rules[f.Rule]
	if !ok || rule == nil {
		return false
	}
	if len(rule.Entries) == 0 {
		rule.used = true
		return true
	}
	matched := false
	for _, entry := range rule.Entries {
		if entry.matches(f) {
			entry.used, rule.used, matched = true, true, true
		}
	}
	return matched
}

// Excluded and Downgraded apply the configuration to one finding.
func (c *Config) Excluded(f Finding) bool { return match(c.Exclusions, f) }

func (c *Config) Downgraded(f Finding) bool { return match(c.Warnings, f) }

// Unused lists the exceptions that matched no finding.
func (c *Config) Unused() []string {
	var out []string
	for kind, rules := range map[string]map[string]*RuleEntries{"exclusions": c.Exclusions, "warnings": c.Warnings} {
		for name, rule := range rules {
			if rule == nil {
				continue
			}
			if !rule.used {
				out = append(out, fmt.Sprintf("%s.%s matches no finding", kind, name))
				continue
			}
			for _, entry := range rule.Entries {
				if !entry.used {
					out = append(out, fmt.Sprintf("%s.%s entry {dashboard: %q, panel: %q, targetIdx: %q} matches no finding", kind, name, entry.Dashboard, entry.Panel, entry.TargetIdx))
				}
			}
		}
	}
	return out
}
