import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import {
  InferenceService,
  ScoreOrder,
} from "../gen/retain/inference/v1/inference_pb";
import { UserService } from "../gen/retain/user/v1/user_pb";
import { renderWithApi, signInAs, testApi } from "../test/api";
import { AtRiskPage } from "./AtRiskPage";

function setup() {
  const requests: { order: ScoreOrder; pageToken: string }[] = [];
  const api = testApi((router) => {
    router.service(InferenceService, {
      listScores(request) {
        requests.push({ order: request.order, pageToken: request.pageToken });
        const descending = request.order === ScoreOrder.CHURN_PROBABILITY_DESC;
        return {
          scoringRunId: 3n,
          nextPageToken: request.pageToken === "" ? "page-2" : "",
          scores: [
            {
              customerId: descending ? 9n : 4n,
              churnProbability: descending ? 0.97 : 0.51,
              expectedDaysToNextActivity: 40,
              reasons: [
                { code: "LAST_PURCHASE", text: "last purchase 41 days ago" },
              ],
            },
          ],
        };
      },
    });
    router.service(UserService, {
      getCustomer(request) {
        return {
          customer: {
            customerId: request.customerId,
            externalId: `ext-${request.customerId}`,
            phoneNumberMasked: "+2547******12",
          },
        };
      },
    });
  });
  signInAs(api, "amina@example.co.ke");
  renderWithApi(<AtRiskPage />, api);
  return requests;
}

describe("AtRiskPage", () => {
  it("asks the service for the highest risk first", async () => {
    const requests = setup();

    expect(await screen.findByText("ext-9")).toBeInTheDocument();
    expect(screen.getByText("last purchase 41 days ago")).toBeInTheDocument();
    expect(requests[0]?.order).toBe(ScoreOrder.CHURN_PROBABILITY_DESC);
  });

  it("reverses the order from the first page", async () => {
    const requests = setup();
    await screen.findByText("ext-9");
    await userEvent.click(screen.getByRole("button", { name: "Next" }));
    await screen.findByText("ext-9");

    await userEvent.click(
      screen.getByRole("button", { name: /Churn probability/ }),
    );

    expect(await screen.findByText("ext-4")).toBeInTheDocument();
    const last = requests[requests.length - 1];
    expect(last?.order).toBe(ScoreOrder.CHURN_PROBABILITY_ASC);
    expect(last?.pageToken).toBe("");
  });
});
