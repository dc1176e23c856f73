import { create } from "@bufbuild/protobuf";
import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { GetRiskDistributionResponseSchema } from "../gen/retain/inference/v1/inference_pb";
import { RiskHistogram, histogramBars } from "./charts";

const response = create(GetRiskDistributionResponseSchema, {
  buckets: [
    { lower: 0, upper: 0.25, customerCount: 120n },
    { lower: 0.25, upper: 0.5, customerCount: 40n },
    { lower: 0.5, upper: 0.75, customerCount: 25n },
    { lower: 0.75, upper: 1, customerCount: 7n },
  ],
});

describe("RiskHistogram", () => {
  it("labels each bucket by its probability range", () => {
    expect(histogramBars(response.buckets)).toEqual([
      { range: "0.00–0.25", customers: 120 },
      { range: "0.25–0.50", customers: 40 },
      { range: "0.50–0.75", customers: 25 },
      { range: "0.75–1.00", customers: 7 },
    ]);
  });

  it("renders one bar and one table row per bucket", () => {
    const { container } = render(
      <RiskHistogram buckets={response.buckets} width={400} height={200} />,
    );

    const table = screen.getByRole("table", { name: "Risk distribution" });
    const rows = within(table).getAllByRole("row").slice(1);
    expect(rows.map((row) => row.textContent)).toEqual([
      "0.00–0.25120",
      "0.25–0.5040",
      "0.50–0.7525",
      "0.75–1.007",
    ]);
    expect(container.querySelectorAll(".recharts-bar-rectangle")).toHaveLength(
      4,
    );
  });
});
