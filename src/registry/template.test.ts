// Selector values are Go text/template strings rendered with the client's labels (spec §4.3).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isSubset, renderTemplate } from "./template.js";

const client = { nodeName: "node-1", podName: "alpine-0", region: "eu" };

describe("renderTemplate", () => {
  describe("field actions", () => {
    const cases: { name: string; text: string; want: string }[] = [
      { name: "plain field", text: "{{.nodeName}}", want: "node-1" },
      { name: "spaces inside the braces", text: "{{ .nodeName }}", want: "node-1" },
      { name: "several spaces and tabs", text: "{{  \t.nodeName\t  }}", want: "node-1" },
      { name: "literal prefix and suffix", text: "nse-{{.nodeName}}.local", want: "nse-node-1.local" },
      { name: "two actions", text: "{{.region}}/{{.nodeName}}", want: "eu/node-1" },
      { name: "same field twice", text: "{{.region}}-{{.region}}", want: "eu-eu" },
      { name: "adjacent actions", text: "{{.region}}{{.podName}}", want: "eualpine-0" },
      { name: "closing braces in trailing text stay literal", text: "{{.region}} }}", want: "eu }}" },
      { name: "index form of older NSM docs", text: '{{index . "nodeName"}}', want: "node-1" },
      { name: "index form with a missing key", text: '{{ index . "zone" }}', want: "<no value>" },
    ];
    for (const c of cases) {
      it(c.name, () => assert.equal(renderTemplate(c.text, client), c.want));
    }
  });

  describe("trim markers", () => {
    const cases: { name: string; text: string; want: string }[] = [
      { name: "both sides", text: "a  {{- .region -}}  b", want: "aeub" },
      { name: "left only", text: "a  {{- .region}}  b", want: "aeu  b" },
      { name: "right only", text: "a  {{.region -}}  b", want: "a  eub" },
      { name: "newlines and tabs are trimmed", text: "a\n\t {{- .region -}} \n\tb", want: "aeub" },
      { name: "trim with nothing to trim", text: "a{{- .region -}}b", want: "aeub" },
      { name: "trim only touches the adjacent text", text: "x y {{- .region}} z", want: "x yeu z" },
    ];
    for (const c of cases) {
      it(c.name, () => assert.equal(renderTemplate(c.text, client), c.want));
    }
  });

  describe("missing key renders <no value> (Go map semantics)", () => {
    it("alone", () => assert.equal(renderTemplate("{{.zone}}", client), "<no value>"));
    it("inside literal text", () => assert.equal(renderTemplate("z-{{.zone}}-1", client), "z-<no value>-1"));
    it("with empty data", () => assert.equal(renderTemplate("{{.nodeName}}", {}), "<no value>"));
    it("an inherited property is not a label", () =>
      assert.equal(renderTemplate("{{.toString}}", {}), "<no value>"));
    it("a present but empty label renders empty, not <no value>", () =>
      assert.equal(renderTemplate("[{{.nodeName}}]", { nodeName: "" }), "[]"));
  });

  describe("unsupported or invalid constructs fall back to the literal", () => {
    // Each of these is a parse or execution error in Go's text/template for map[string]string data.
    const cases: { name: string; text: string }[] = [
      { name: "undefined function", text: "{{lower .nodeName}}" },
      { name: "pipeline into an undefined function", text: "{{.nodeName | upper}}" },
      { name: "nested field on a string", text: "{{.nodeName.b}}" },
      { name: "deeper field chain", text: "{{.region.b.c}}" },
      { name: "unclosed action", text: "{{.nodeName" },
      { name: "unclosed action after a valid one", text: "{{.nodeName}}-{{.region" },
      { name: "empty action", text: "{{}}" },
      { name: "field name with a dash", text: "{{.node-name}}" },
      { name: "one bad action spoils the whole template", text: "{{.region}}-{{lower .nodeName}}" },
    ];
    for (const c of cases) {
      it(c.name, () => assert.equal(renderTemplate(c.text, client), c.text));
    }
  });

  describe("literal text without templates", () => {
    for (const text of ["", "node-1", "a { b } c", "}}", "{ {.nodeName} }", "<no value>"]) {
      it(JSON.stringify(text), () => assert.equal(renderTemplate(text, client), text));
    }
  });
});

describe("isSubset: a missing key reads as the empty string, as in Go", () => {
  it('selector value "" matches labels without the key', () =>
    assert.equal(isSubset({ a: "1", b: "2" }, { c: "" }, {}), true));
  it('selector value "x" does not', () => assert.equal(isSubset({ a: "1" }, { c: "x" }, {}), false));
});

describe("isSubset", () => {
  const cases: {
    name: string;
    a: Record<string, string> | undefined;
    b: Record<string, string> | undefined;
    data?: Record<string, string>;
    want: boolean;
  }[] = [
    { name: "equal maps", a: { app: "x" }, b: { app: "x" }, want: true },
    { name: "a has extra keys", a: { app: "x", tier: "1" }, b: { app: "x" }, want: true },
    { name: "empty selector matches anything", a: { app: "x" }, b: {}, want: true },
    { name: "empty selector matches empty labels", a: {}, b: {}, want: true },
    { name: "undefined selector", a: { app: "x" }, b: undefined, want: true },
    { name: "undefined labels, undefined selector", a: undefined, b: undefined, want: true },
    { name: "undefined labels, non-empty selector", a: undefined, b: { app: "x" }, want: false },
    { name: "value differs", a: { app: "x" }, b: { app: "y" }, want: false },
    { name: "key missing", a: { app: "x", tier: "1" }, b: { zone: "x" }, want: false },
    { name: "one of two keys differs", a: { app: "x", tier: "1" }, b: { app: "x", tier: "2" }, want: false },
    {
      name: "length precheck: selector larger than labels",
      a: { app: "x" },
      b: { app: "x", tier: "1" },
      want: false,
    },
    { name: "values are case sensitive", a: { app: "X" }, b: { app: "x" }, want: false },
    {
      name: "template value rendered with client labels",
      a: { nodeName: "node-1", app: "nse" },
      b: { nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-1" },
      want: true,
    },
    {
      name: "template value rendered with spaces",
      a: { nodeName: "node-1" },
      b: { nodeName: "{{ .nodeName }}" },
      data: { nodeName: "node-1" },
      want: true,
    },
    {
      name: "template value for a client on another node",
      a: { nodeName: "node-1" },
      b: { nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-2" },
      want: false,
    },
    {
      name: "template with literal parts",
      a: { zone: "eu-a" },
      b: { zone: "{{.region}}-a" },
      data: { region: "eu" },
      want: true,
    },
    {
      name: "template may read a different key than the one it selects",
      a: { host: "node-7" },
      b: { host: "{{.nodeName}}" },
      data: { nodeName: "node-7" },
      want: true,
    },
    {
      name: "label literally equal to the template text",
      a: { nodeName: "{{.nodeName}}" },
      b: { nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-1" },
      want: true,
    },
    {
      name: "client without the label: template renders <no value>, not a match",
      a: { nodeName: "node-1" },
      b: { nodeName: "{{.nodeName}}" },
      data: {},
      want: false,
    },
    {
      name: "client without the label matches a literal <no value> (Go rendering)",
      a: { nodeName: "<no value>" },
      b: { nodeName: "{{.nodeName}}" },
      data: {},
      want: true,
    },
    {
      name: "unrenderable template compares as its literal text",
      a: { nodeName: "node-1" },
      b: { nodeName: "{{lower .nodeName}}" },
      data: { nodeName: "node-1" },
      want: false,
    },
    {
      name: "template is not rendered against the endpoint's labels",
      a: { nodeName: "node-1" },
      b: { nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-9" },
      want: false,
    },
    {
      name: "mixed literal and templated keys, all satisfied",
      a: { app: "nse", nodeName: "node-1" },
      b: { app: "nse", nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-1" },
      want: true,
    },
    {
      name: "mixed literal and templated keys, literal fails",
      a: { app: "other", nodeName: "node-1" },
      b: { app: "nse", nodeName: "{{.nodeName}}" },
      data: { nodeName: "node-1" },
      want: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(isSubset(c.a, c.b, c.data ?? {}), c.want));
  }
});
