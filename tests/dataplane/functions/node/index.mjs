// Node.js fixture function for the fleetfn data-plane suite (handler `index.handler`, ESM).
// The event's `op` picks the behaviour; anything else echoes the event.
export const handler = async (event, context) => {
  const op = event && typeof event === "object" ? event.op : undefined;
  if (op === "sleep") {
    const start = Date.now() / 1000;
    await new Promise((resolve) => setTimeout(resolve, event.ms));
    return { start, end: Date.now() / 1000, pid: process.pid };
  }
  if (op === "error") {
    throw new Error("error requested by the event");
  }
  if (op === "env") {
    return { env: { ...process.env }, requestId: context.awsRequestId };
  }
  return event;
};
