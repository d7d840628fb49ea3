/** An error the user can act on: its message says what is wrong and what to do. No stack trace. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}
